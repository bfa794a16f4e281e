#include "ktf/checkpoint.h"

#include <ATen/Context.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iomanip>
#include <map>
#include <mutex>
#include <set>
#include <sstream>

#include "ktf/error.h"
#include "ktf/tfrecord.h"

namespace ktf {
namespace fs = std::filesystem;

// ---- policy ------------------------------------------------------------------------------------

const Spec& CheckpointPolicy::spec() {
  static const Spec s = [] {
    Spec spec;
    spec.name = "checkpoint";
    spec.summary = "when the run writes checkpoints, how many it keeps, and numerical faults";
    auto param = [&](const char* name, ParamType type, Json def, const char* doc) -> Param& {
      Param p;
      p.name = name;
      p.type = type;
      p.default_value = std::move(def);
      p.doc = doc;
      p.nullable = p.default_value.is_null();
      spec.params.push_back(p);
      return spec.params.back();
    };
    param("every_steps", ParamType::Int, Json(),
          "also after every N optimizer steps of the run; null = not by steps")
        .minimum = 1;
    Param& minutes = param("every_minutes", ParamType::Float, Json(),
                           "also at the first step T minutes after the last checkpoint; null = "
                           "not by time");
    minutes.minimum = 0;
    minutes.exclusive_minimum = true;
    param("every_epoch", ParamType::Bool, true, "after every epoch");
    param("keep", ParamType::Int, 3, "complete checkpoints kept; older ones are removed").minimum =
        1;
    param("stop_on_nonfinite", ParamType::Bool, true,
          "stop the run on a NaN or Inf loss (naming cycle, epoch and step), keeping the last "
          "good checkpoint");
    return spec;
  }();
  return s;
}

CheckpointPolicy CheckpointPolicy::from_json(const Json& v) {
  CheckpointPolicy p;
  if (!v.is_object()) return p;
  if (const Json* x = v.find("every_steps"); x && !x->is_null()) p.every_steps = x->as_int();
  if (const Json* x = v.find("every_minutes"); x && !x->is_null()) p.every_minutes = x->as_number();
  if (const Json* x = v.find("every_epoch")) p.every_epoch = x->as_bool();
  if (const Json* x = v.find("keep")) p.keep = x->as_int();
  if (const Json* x = v.find("stop_on_nonfinite")) p.stop_on_nonfinite = x->as_bool();
  return p;
}

// ---- store -------------------------------------------------------------------------------------

namespace {

constexpr const char* kFormat = "ktf-checkpoint-1";

std::string sequence_name(int64_t sequence) {
  std::ostringstream name;
  name << "ckpt-" << std::setw(8) << std::setfill('0') << sequence;
  return name.str();
}

/// Sequence number of "ckpt-00000012.json", or -1.
int64_t sequence_of(const fs::path& p, const char* extension) {
  const std::string name = p.filename().string();
  if (name.rfind("ckpt-", 0) != 0 || p.extension() != extension) return -1;
  const std::string digits = p.stem().string().substr(5);
  if (digits.empty() || digits.size() > 12 ||
      !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return -1;
  return std::stoll(digits);
}

/// The file's bytes. A file that exists but cannot be read (permissions, an I/O error) is an
/// error, not a damaged checkpoint: nothing is passed over or set aside because of it.
std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::error_code ec;
    if (!fs::exists(path, ec)) return {};
    throw Error("cannot read '" + path.string() + "': " + std::strerror(errno), {}, kExitRuntime);
  }
  std::ostringstream out;
  out << in.rdbuf();
  if (in.bad())
    throw Error("cannot read '" + path.string() + "': " + std::strerror(errno), {}, kExitRuntime);
  return out.str();
}

std::vector<fs::path> files_with(const fs::path& dir, const char* extension) {
  std::vector<fs::path> out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  for (const auto& entry : fs::directory_iterator(dir, ec))
    if (sequence_of(entry.path(), extension) >= 0) out.push_back(entry.path());
  std::sort(out.begin(), out.end(), [&](const fs::path& a, const fs::path& b) {
    return sequence_of(a, extension) > sequence_of(b, extension);  // newest first
  });
  return out;
}

/// The fault-injection hook of the resume tests (docs/reliability.md): KTF_CRASH_AT_CHECKPOINT=
/// "N:partial" kills the process with SIGKILL while checkpoint N's state file is half written,
/// "N:state" once the state file is in place and before its manifest is written.
void crash_if_asked(int64_t sequence, const char* stage, const fs::path& tmp = {},
                    const std::string& data = {}) {
  const char* env = std::getenv("KTF_CRASH_AT_CHECKPOINT");
  if (!env) return;
  const std::string want = std::to_string(sequence) + ":" + stage;
  if (want != env) return;
  if (!tmp.empty()) {
    std::ofstream out(tmp, std::ios::binary);
    out.write(data.data(), static_cast<std::streamsize>(data.size() / 2));
    out.flush();
  }
  std::raise(SIGKILL);
}

std::string now_text() {
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  std::ostringstream out;
  out << std::put_time(&tm, "%Y-%m-%dT%H:%M:%S%z");
  return out.str();
}

}  // namespace

CheckpointStore::CheckpointStore(fs::path run_dir) : dir_(std::move(run_dir) / "checkpoints") {}

std::optional<CheckpointInfo> CheckpointStore::check(const fs::path& manifest,
                                                     std::string& why) const {
  CheckpointInfo info;
  info.manifest_file = manifest;
  info.sequence = sequence_of(manifest, ".json");
  try {
    info.manifest = Json::parse(read_bytes(manifest), manifest.string());
  } catch (const Error& e) {
    why = "its manifest does not parse (" + e.message() + ")";
    return std::nullopt;
  }
  const Json& m = info.manifest;
  const Json* format = m.find("format");
  const Json* file = m.find("file");
  const Json* bytes = m.find("bytes");
  const Json* crc = m.find("crc32c");
  if (!m.is_object() || !format || !format->is_string() || format->as_string() != kFormat ||
      !file || !file->is_string() || !bytes || !bytes->is_int() || !crc || !crc->is_int() ||
      !m.find("position")) {
    why = "its manifest is not a ktf checkpoint manifest";
    return std::nullopt;
  }
  info.state_file = dir_ / file->as_string();
  std::error_code ec;
  const auto size = fs::file_size(info.state_file, ec);
  if (ec) {
    why = "its state file " + info.state_file.filename().string() + " is missing";
    return std::nullopt;
  }
  if (static_cast<int64_t>(size) != bytes->as_int()) {
    why = "its state file has " + std::to_string(size) + " bytes, the manifest says " +
          std::to_string(bytes->as_int());
    return std::nullopt;
  }
  return info;
}

std::optional<CheckpointInfo> CheckpointStore::newest(
    const std::function<void(const std::string&)>& log) const {
  std::string data;
  return find_newest(log, data);
}

std::optional<std::pair<CheckpointInfo, State>> CheckpointStore::load_newest(
    const std::function<void(const std::string&)>& log) const {
  std::string data;  // read and checked once
  auto info = find_newest(log, data);
  if (!info) return std::nullopt;
  return std::make_pair(*info, parse(*info, data));
}

std::optional<CheckpointInfo> CheckpointStore::find_newest(
    const std::function<void(const std::string&)>& log, std::string& data) const {
  // Every checkpoint present, newest first: its manifest, or a state file without one.
  std::map<int64_t, fs::path, std::greater<>> found;
  for (const auto& st : files_with(dir_, ".pt")) found[sequence_of(st, ".pt")] = st;
  for (const auto& m : files_with(dir_, ".json")) found[sequence_of(m, ".json")] = m;
  for (const auto& [sequence, file] : found) {
    std::string why;
    if (file.extension() == ".pt") {
      why = "its manifest is missing (it was being written when the run stopped)";
    } else if (auto info = check(file, why)) {
      // The checksum is read here: a checkpoint that fails it is skipped like an incomplete one.
      data = read_bytes(info->state_file);
      if (static_cast<int64_t>(crc32c(data)) == info->manifest.at("crc32c").as_int()) {
        verified_.insert(sequence);
        return info;
      }
      why = "its state file fails its CRC-32C";
    }
    if (log) log("checkpoint " + file.stem().string() + " skipped: " + why);
  }
  return std::nullopt;
}

bool CheckpointStore::holds_any() const {
  return !files_with(dir_, ".json").empty() || !files_with(dir_, ".pt").empty();
}

State CheckpointStore::read(const CheckpointInfo& info) const {
  const std::string data = read_bytes(info.state_file);
  if (static_cast<int64_t>(crc32c(data)) != info.manifest.at("crc32c").as_int())
    throw Error("checkpoint '" + info.state_file.string() + "' fails its CRC-32C", {},
                kExitRuntime);
  return parse(info, data);
}

State CheckpointStore::parse(const CheckpointInfo& info, const std::string& data) const {
  try {
    std::istringstream in(data);
    torch::serialize::InputArchive archive;
    archive.load_from(in);
    return State::read(archive);
  } catch (const c10::Error& e) {
    throw Error("checkpoint '" + info.state_file.string() +
                    "' cannot be read: " + e.what_without_backtrace(),
                {}, kExitRuntime);
  }
}

CheckpointInfo CheckpointStore::write(const State& state, const std::string& reason, Json position,
                                      int64_t keep) {
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec) throw Error("cannot create '" + dir_.string() + "': " + ec.message(), {}, kExitRuntime);
  if (next_ == 0) {
    auto existing = files_with(dir_, ".json");
    auto states = files_with(dir_, ".pt");
    int64_t newest = 0;
    if (!existing.empty()) newest = std::max(newest, sequence_of(existing.front(), ".json"));
    if (!states.empty()) newest = std::max(newest, sequence_of(states.front(), ".pt"));
    next_ = newest + 1;
  }
  CheckpointInfo info;
  info.sequence = next_++;
  const std::string name = sequence_name(info.sequence);
  info.state_file = dir_ / (name + ".pt");
  info.manifest_file = dir_ / (name + ".json");

  std::ostringstream bytes;
  {
    torch::serialize::OutputArchive archive;
    state.write(archive);
    archive.save_to(bytes);
  }
  const std::string data = bytes.str();
  crash_if_asked(info.sequence, "partial", dir_ / ("." + name + ".pt.tmp-crash"), data);
  write_file_atomic(info.state_file, data);
  crash_if_asked(info.sequence, "state");
  info.manifest = Json::object({{"format", kFormat},
                                {"sequence", info.sequence},
                                {"file", info.state_file.filename().string()},
                                {"bytes", static_cast<int64_t>(data.size())},
                                {"crc32c", static_cast<int64_t>(crc32c(data))},
                                {"reason", reason},
                                {"written", now_text()},
                                {"position", std::move(position)}});
  write_file_atomic(info.manifest_file, info.manifest.dump(2) + "\n");

  verified_.insert(info.sequence);
  // Keep the newest `keep` verified checkpoints (written by this process, or checked against
  // their CRC when the run resumed); remove everything older than the oldest of those, manifest
  // first. An unverified checkpoint never takes a verified one's place.
  int64_t kept = 0, oldest_kept = info.sequence;
  for (auto it = verified_.rbegin(); it != verified_.rend() && kept < keep; ++it, ++kept)
    oldest_kept = *it;
  if (kept >= keep) {
    for (const auto& manifest : files_with(dir_, ".json"))
      if (sequence_of(manifest, ".json") < oldest_kept) fs::remove(manifest, ec);
    for (const auto& st : files_with(dir_, ".pt"))
      if (sequence_of(st, ".pt") < oldest_kept) fs::remove(st, ec);
    verified_.erase(verified_.begin(), verified_.lower_bound(oldest_kept));
  }
  for (const auto& entry : fs::directory_iterator(dir_, ec))
    if (entry.path().filename().string().find(".tmp-") != std::string::npos)
      fs::remove(entry.path(), ec);
  sync_directory(dir_);
  return info;
}

void CheckpointStore::set_aside(const fs::path& file) const {
  std::error_code ec;
  fs::create_directories(dir_ / "skipped", ec);
  fs::rename(file, dir_ / "skipped" / file.filename(), ec);
  if (ec)
    throw Error("cannot move '" + file.string() + "' to " + (dir_ / "skipped").string() + ": " +
                    ec.message(),
                {}, kExitRuntime);
}

void CheckpointStore::discard_after(int64_t sequence) {
  for (const char* extension : {".json", ".pt"})
    for (const auto& f : files_with(dir_, extension))
      if (sequence_of(f, extension) > sequence) set_aside(f);
  next_ = 0;
  sync_directory(dir_);
}

void CheckpointStore::clear() {
  for (const char* extension : {".json", ".pt"})
    for (const auto& f : files_with(dir_, extension)) set_aside(f);
  next_ = 0;
  verified_.clear();
  sync_directory(dir_);
}

// ---- archives ----------------------------------------------------------------------------------

torch::Tensor archive_bytes(const std::function<void(torch::serialize::OutputArchive&)>& save) {
  torch::serialize::OutputArchive archive;
  save(archive);
  std::ostringstream out;
  archive.save_to(out);
  const std::string data = out.str();
  auto t = torch::empty({static_cast<int64_t>(data.size())}, torch::kUInt8);
  std::memcpy(t.data_ptr(), data.data(), data.size());
  return t;
}

void load_archive_bytes(const torch::Tensor& bytes,
                        const std::function<void(torch::serialize::InputArchive&)>& load) {
  auto t = bytes.contiguous();
  std::istringstream in(
      std::string(static_cast<const char*>(t.data_ptr()), static_cast<size_t>(t.numel())));
  torch::serialize::InputArchive archive;
  archive.load_from(in);
  load(archive);
}

}  // namespace ktf
