#include "ktf/state.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <sstream>

#include "ktf/error.h"

namespace ktf {
namespace fs = std::filesystem;

// ---- State -------------------------------------------------------------------------------------

namespace {

[[noreturn]] void missing(const char* what, const std::string& key) {
  throw Error(std::string("the checkpoint state has no ") + what + " '" + key +
                  "' (was it saved by a different version of this component?)",
              {}, kExitRuntime);
}

/// Keys of the values object that describe the archive's layout.
constexpr const char* kTensorKeys = "__tensors";
constexpr const char* kUndefinedKeys = "__undefined";
constexpr const char* kChildKeys = "__children";

}  // namespace

void State::set(const std::string& key, Json value) { values_.set(key, std::move(value)); }

const Json& State::at(const std::string& key) const {
  const Json* v = values_.find(key);
  if (!v) missing("value", key);
  return *v;
}

bool State::has(const std::string& key) const { return values_.find(key) != nullptr; }

void State::set_number(const std::string& key, double value) {
  if (std::isfinite(value)) {
    values_.set(key, value);
    return;
  }
  values_.set(key, std::isnan(value) ? "nan" : value > 0 ? "inf" : "-inf");
}

double State::number(const std::string& key) const {
  const Json& v = at(key);
  if (v.is_number()) return v.as_number();
  if (v.is_string()) {
    const std::string& s = v.as_string();
    if (s == "nan") return std::nan("");
    if (s == "inf") return HUGE_VAL;
    if (s == "-inf") return -HUGE_VAL;
  }
  throw Error("the checkpoint state's '" + key + "' is not a number: " + v.dump(), {},
              kExitRuntime);
}

void State::set_tensor(const std::string& key, const torch::Tensor& value) {
  tensors_[key] = value.defined() ? value.detach() : torch::Tensor();
}

torch::Tensor State::tensor(const std::string& key) const {
  auto it = tensors_.find(key);
  if (it == tensors_.end()) missing("tensor", key);
  return it->second;
}

bool State::has_tensor(const std::string& key) const { return tensors_.count(key) > 0; }

State& State::child(const std::string& key) { return children_[key]; }

const State& State::child(const std::string& key) const {
  auto it = children_.find(key);
  if (it == children_.end()) missing("state", key);
  return it->second;
}

std::vector<std::string> State::child_keys() const {
  std::vector<std::string> keys;
  for (const auto& [key, c] : children_) keys.push_back(key);
  return keys;
}

bool State::has_child(const std::string& key) const { return children_.count(key) > 0; }

bool State::empty() const {
  if (!tensors_.empty()) return false;
  if (values_.size() > 0) return false;
  for (const auto& [k, c] : children_)
    if (!c.empty()) return false;
  return true;
}

void State::write(torch::serialize::OutputArchive& archive) const {
  Json values = values_;
  Json::Array tensor_keys, undefined, child_keys;
  for (const auto& [key, t] : tensors_) {
    if (t.defined()) {
      tensor_keys.emplace_back(key);
      archive.write("t/" + key, t);
    } else {
      undefined.emplace_back(key);
    }
  }
  for (const auto& [key, c] : children_) {
    child_keys.emplace_back(key);
    torch::serialize::OutputArchive sub;
    c.write(sub);
    archive.write("c/" + key, sub);
  }
  values.set(kTensorKeys, Json(std::move(tensor_keys)));
  values.set(kUndefinedKeys, Json(std::move(undefined)));
  values.set(kChildKeys, Json(std::move(child_keys)));
  archive.write("values", c10::IValue(values.dump()));
}

State State::read(torch::serialize::InputArchive& archive) {
  State s;
  c10::IValue text;
  if (!archive.try_read("values", text) || !text.isString())
    throw Error("the checkpoint state has no values (the file is not a ktf checkpoint)", {},
                kExitRuntime);
  s.values_ = Json::parse(text.toStringRef(), "checkpoint state");
  auto take_list = [&](const char* key) {
    Json list = s.values_.find(key) ? *s.values_.find(key) : Json::array();
    s.values_.erase(key);
    return list;
  };
  const Json tensor_keys = take_list(kTensorKeys), undefined = take_list(kUndefinedKeys),
             child_keys = take_list(kChildKeys);
  for (const auto& key : tensor_keys.as_array()) {
    torch::Tensor t;
    if (!archive.try_read("t/" + key.as_string(), t)) missing("tensor", key.as_string());
    s.tensors_[key.as_string()] = t;
  }
  for (const auto& key : undefined.as_array()) s.tensors_[key.as_string()] = torch::Tensor();
  for (const auto& key : child_keys.as_array()) {
    torch::serialize::InputArchive sub;
    if (!archive.try_read("c/" + key.as_string(), sub)) missing("state", key.as_string());
    s.children_[key.as_string()] = read(sub);
  }
  return s;
}

std::string State::to_bytes() const {
  std::ostringstream out;
  torch::serialize::OutputArchive archive;
  write(archive);
  archive.save_to(out);
  return out.str();
}

State State::from_bytes(const std::string& bytes) {
  try {
    std::istringstream in(bytes);
    torch::serialize::InputArchive archive;
    archive.load_from(in);
    return read(archive);
  } catch (const c10::Error& e) {
    throw Error(std::string("not a ktf state: ") + e.what_without_backtrace(), {}, kExitRuntime);
  }
}

State State::round_trip() const { return from_bytes(to_bytes()); }

void State::add(const State& other) {
  for (const auto& [key, value] : other.values_.as_object()) {
    Json* mine = values_.find(key);
    if (!mine) {
      values_.set(key, value);
    } else if (mine->is_int() && value.is_int()) {
      *mine = Json(mine->as_int() + value.as_int());
    } else if (mine->is_number() && value.is_number()) {
      *mine = Json(mine->as_number() + value.as_number());
    }
  }
  for (const auto& [key, t] : other.tensors_) {
    torch::Tensor& mine = tensors_[key];
    if (!t.defined()) continue;
    if (!mine.defined()) {
      mine = t.clone();
    } else {
      KTF_CHECK_RUNTIME(mine.sizes() == t.sizes(), "state tensor '", key, "': shapes ",
                        mine.sizes(), " and ", t.sizes(), " cannot be added");
      mine = mine + t.to(mine.device());
    }
  }
  for (const auto& [key, c] : other.children_) children_[key].add(c);
}

bool operator==(const State& a, const State& b) {
  if (a.values_ != b.values_ || a.tensors_.size() != b.tensors_.size() ||
      a.children_.size() != b.children_.size())
    return false;
  for (const auto& [key, t] : a.tensors_) {
    auto it = b.tensors_.find(key);
    if (it == b.tensors_.end() || t.defined() != it->second.defined()) return false;
    if (t.defined() &&
        (t.scalar_type() != it->second.scalar_type() || !torch::equal(t.cpu(), it->second.cpu())))
      return false;
  }
  for (const auto& [key, c] : a.children_) {
    auto it = b.children_.find(key);
    if (it == b.children_.end() || c != it->second) return false;
  }
  return true;
}

void save_module_state(State& state, torch::nn::Module& module) {
  State& params = state.child("parameters");
  for (const auto& p : module.named_parameters()) params.set_tensor(p.key(), p.value());
  State& buffers = state.child("buffers");
  for (const auto& b : module.named_buffers()) buffers.set_tensor(b.key(), b.value());
}

void load_module_state(const State& state, torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  auto copy_into = [](const State& saved, const std::string& what, const std::string& key,
                      torch::Tensor& target) {
    if (!saved.has_tensor(key))
      throw Error("the checkpoint has no " + what + " '" + key +
                      "' of the model (was it saved for a different model?)",
                  {}, kExitRuntime);
    torch::Tensor t = saved.tensor(key);
    if (!t.defined() || t.sizes() != target.sizes())
      throw Error("the checkpoint's " + what + " '" + key + "' has shape " +
                      (t.defined() ? c10::str(t.sizes()) : std::string("undefined")) +
                      ", the model's " + c10::str(target.sizes()),
                  {}, kExitRuntime);
    target.copy_(t);
  };
  const State& params = state.child("parameters");
  for (auto& p : module.named_parameters()) copy_into(params, "parameter", p.key(), p.value());
  const State& buffers = state.child("buffers");
  for (auto& b : module.named_buffers()) copy_into(buffers, "buffer", b.key(), b.value());
}

void save_rng_state(State& state) {
  {
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    state.set_tensor("cpu", gen.get_state());
  }
  int64_t devices = torch::cuda::is_available() ? torch::cuda::device_count() : 0;
  state.set("cuda_devices", devices);
  for (int64_t i = 0; i < devices; ++i) {
    auto gen = at::globalContext().defaultGenerator(c10::Device(c10::kCUDA, i));
    std::lock_guard<std::mutex> lock(gen.mutex());
    state.set_tensor("cuda" + std::to_string(i), gen.get_state());
  }
}

void load_rng_state(const State& state) {
  {
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(state.tensor("cpu"));
  }
  int64_t saved = state.at("cuda_devices").as_int();
  int64_t devices = torch::cuda::is_available() ? torch::cuda::device_count() : 0;
  for (int64_t i = 0; i < std::min(saved, devices); ++i) {
    auto gen = at::globalContext().defaultGenerator(c10::Device(c10::kCUDA, i));
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(state.tensor("cuda" + std::to_string(i)));
  }
}

// ---- files -------------------------------------------------------------------------------------

namespace {

[[noreturn]] void io_error(const std::string& action, const fs::path& path, int err) {
  throw Error("cannot " + action + " '" + path.string() + "': " + std::strerror(err), {},
              kExitRuntime);
}

/// Writes all of `data`, retrying short writes; returns errno or 0.
int write_all(int fd, const char* data, size_t size) {
  while (size > 0) {
    ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
  return 0;
}

}  // namespace

void sync_file(const fs::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

void sync_directory(const fs::path& dir) {
  int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;  // nothing to sync on a file system without directory fds
  ::fsync(fd);
  ::close(fd);
}

void write_file_atomic(const fs::path& path, const std::string& bytes) {
  const fs::path dir = path.has_parent_path() ? path.parent_path() : fs::path(".");
  const fs::path tmp =
      dir / ("." + path.filename().string() + ".tmp-" + std::to_string(::getpid()));
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) io_error("write", path, errno);
  int err = write_all(fd, bytes.data(), bytes.size());
  if (!err && ::fsync(fd) != 0) err = errno;
  if (::close(fd) != 0 && !err) err = errno;
  if (!err && ::rename(tmp.c_str(), path.c_str()) != 0) err = errno;
  if (err) {
    ::unlink(tmp.c_str());
    io_error("write", path, err);
  }
  sync_directory(dir);
}

void check_writable_directory(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec)
    throw Error("cannot create directory '" + dir.string() + "': " + ec.message(), {},
                kExitRuntime);
  if (!fs::is_directory(dir, ec))
    throw Error("'" + dir.string() + "' is not a directory", {}, kExitRuntime);
  const fs::path probe = dir / (".ktf-write-test-" + std::to_string(::getpid()));
  int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) io_error("write in directory", dir, errno);
  int err = write_all(fd, "ktf\n", 4);
  if (!err && ::fsync(fd) != 0) err = errno;
  ::close(fd);
  ::unlink(probe.c_str());
  if (err) io_error("write in directory", dir, err);
}

// ---- RunLog ------------------------------------------------------------------------------------

RunLog::~RunLog() {
  try {
    close();
  } catch (...) {
    // A destructor cannot report a full disk; the last checkpoint's length is still valid.
  }
}

void RunLog::open(const fs::path& path, bool fresh) {
  close();
  path_ = path;
  std::error_code ec;
  if (path.has_parent_path()) fs::create_directories(path.parent_path(), ec);
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | (fresh ? O_TRUNC : 0), 0644);
  if (fd_ < 0) io_error("write", path, errno);
  struct stat st {};
  written_ = ::fstat(fd_, &st) == 0 ? static_cast<int64_t>(st.st_size) : 0;
  if (::lseek(fd_, 0, SEEK_END) < 0) io_error("write", path, errno);
  buffer_.clear();
}

void RunLog::write(const std::string& text) {
  if (fd_ < 0) throw Error("'" + path_.string() + "' is not open", {}, kExitRuntime);
  buffer_ += text;
  if (buffer_.size() >= (1 << 16)) flush();
}

void RunLog::flush() {
  if (fd_ < 0 || buffer_.empty()) return;
  int err = write_all(fd_, buffer_.data(), buffer_.size());
  if (err) {
    // Keep the file at a length a checkpoint may name: drop the partly written tail.
    if (::ftruncate(fd_, written_) == 0) ::lseek(fd_, 0, SEEK_END);
    buffer_.clear();
    io_error("write", path_, err);
  }
  written_ += static_cast<int64_t>(buffer_.size());
  buffer_.clear();
}

void RunLog::sync() {
  flush();
  if (fd_ >= 0 && ::fsync(fd_) != 0) io_error("sync", path_, errno);
}

void RunLog::close() {
  if (fd_ < 0) return;
  int fd = fd_;
  try {
    flush();
  } catch (...) {
    fd_ = -1;
    ::close(fd);
    throw;
  }
  fd_ = -1;
  ::close(fd);
}

void RunLog::save_state(State& state) {
  sync();
  state.set("path", path_.string());
  state.set("size", written_);
}

void RunLog::load_state(const State& state) {
  if (path_.empty())
    throw Error("a run log must be opened before its checkpoint state is loaded", {}, kExitRuntime);
  const fs::path path = path_;
  const int64_t size = state.at("size").as_int();
  close();
  std::error_code ec;
  const auto have = fs::exists(path, ec) ? static_cast<int64_t>(fs::file_size(path, ec)) : 0;
  // Shorter than at the checkpoint: a later cycle replaced the file (it will again) or it was
  // edited. It is continued as it is; only what was written after the checkpoint is cut.
  shorter_ = have < size;
  if (!shorter_ && ::truncate(path.c_str(), size) != 0) io_error("truncate", path, errno);
  open(path, /*fresh=*/false);
}

}  // namespace ktf
