// ktf.datasets.csv: numeric feature columns and a label column from CSV files.
#include <ktf/components.h>
#include <ktf/registry.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <map>

#include <ktf/data.h>
#include "datasets.h"
#include "io.h"

namespace ktf::datasets {
namespace {

struct CsvOptions : PipelineOptions {
  std::string file;             ///< CSV file of the training split (.gz accepted)
  std::string validation_file;  ///< CSV file of the validation split (optional)
  /// held-out fraction when there is no validation_file; null or "none" = none
  std::optional<ValidationArg> validation;
  /// label column: name or 0-based index; null = the last one
  std::optional<std::variant<std::string, int64_t>> label_column;
  bool header = true;                ///< the first line names the columns
  std::string delimiter = ",";       ///< one-character field separator
  std::optional<double> fill_value;  ///< value for missing cells (empty, NA, NaN); null = error
  int64_t num_classes = 0;           ///< number of classes; 0 = from the labels
};

std::vector<std::string> split_line(const std::string& line, char sep) {
  std::vector<std::string> out;
  std::string cur;
  bool quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    char c = line[i];
    if (quoted) {
      if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
        cur += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        cur += c;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == sep) {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  out.push_back(cur);
  for (auto& f : out) {
    size_t b = f.find_first_not_of(" \t"), e = f.find_last_not_of(" \t\r");
    f = b == std::string::npos ? "" : f.substr(b, e - b + 1);
  }
  return out;
}

bool is_missing(const std::string& s) {
  return s.empty() || s == "NA" || s == "N/A" || s == "NaN" || s == "nan" || s == "null";
}

struct Table {
  std::vector<std::string> columns;
  std::vector<std::vector<std::string>> rows;
  std::vector<int64_t> line_numbers;
};

Table read_table(const std::string& path, const CsvOptions& o) {
  std::string text = read_file(path, "CSV file");
  if (size_t nul = text.find('\0'); nul != std::string::npos)
    throw Error("CSV file '" + path + "': line " +
                std::to_string(1 + std::count(text.begin(), text.begin() + nul, '\n')) +
                " holds a NUL byte (byte " + std::to_string(nul) +
                "): a CSV file is text; is it a binary file?");
  Table t;
  size_t pos = 0;
  int64_t line_no = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    auto fields = split_line(line, o.delimiter[0]);
    if (t.columns.empty() && t.rows.empty()) {
      if (o.header) {
        t.columns = fields;
        continue;
      }
      for (size_t i = 0; i < fields.size(); ++i) t.columns.push_back(std::to_string(i));
    }
    KTF_CHECK(fields.size() == t.columns.size(), "CSV file '", path, "': line ", line_no, " has ",
              fields.size(), " fields, expected ", t.columns.size());
    t.rows.push_back(std::move(fields));
    t.line_numbers.push_back(line_no);
  }
  KTF_CHECK(!t.rows.empty(), "CSV file '", path, "' has no data rows");
  return t;
}

size_t label_index(const Table& t, const std::optional<std::variant<std::string, int64_t>>& label,
                   const std::string& path) {
  if (!label) return t.columns.size() - 1;
  if (const auto* index = std::get_if<int64_t>(&*label)) {
    int64_t i = *index;
    KTF_CHECK(i >= 0 && i < static_cast<int64_t>(t.columns.size()), "label_column ", i,
              " is out of range: CSV file '", path, "' has ", t.columns.size(), " columns");
    return static_cast<size_t>(i);
  }
  const auto& name = std::get<std::string>(*label);
  auto it = std::find(t.columns.begin(), t.columns.end(), name);
  KTF_CHECK(it != t.columns.end(), "label_column '", name, "' is not a column of CSV file '", path,
            "'");
  return static_cast<size_t>(it - t.columns.begin());
}

/// A feature cell's value: a finite number, or fill_value for a missing cell. `where()` names the
/// file, line and column.
template <class Where>
float feature_value(const std::string& cell, const Where& where, const CsvOptions& o) {
  double v;
  if (is_missing(cell)) {
    KTF_CHECK(o.fill_value.has_value(), where(),
              ": missing value (set fill_value to replace missing values)");
    v = *o.fill_value;
  } else {
    char* end = nullptr;
    errno = 0;
    v = std::strtod(cell.c_str(), &end);
    KTF_CHECK(end == cell.c_str() + cell.size() && errno == 0, where(), ": '", cell,
              "' is not a number");
    KTF_CHECK(std::isfinite(v), where(), ": '", cell, "' is not a finite number");
  }
  return static_cast<float>(v);
}

/// Converts a table to features [N, F] and labels [N]; labels that are not all integers are class
/// names, numbered in sorted order (`names` is shared between splits).
TensorSplit to_tensors(const Table& t, size_t label, const std::string& path, const CsvOptions& o,
                       std::map<std::string, int64_t>& names, bool named_labels) {
  int64_t n = static_cast<int64_t>(t.rows.size());
  int64_t f = static_cast<int64_t>(t.columns.size()) - 1;
  auto x = torch::empty({n, f}, torch::kFloat32);
  auto y = torch::empty({n}, torch::kLong);
  auto* xp = x.data_ptr<float>();
  auto* yp = y.data_ptr<int64_t>();
  for (int64_t r = 0; r < n; ++r) {
    const auto& row = t.rows[r];
    int64_t k = 0;
    for (size_t c = 0; c < row.size(); ++c) {
      const std::string& cell = row[c];
      auto where = [&] {
        return "CSV file '" + path + "': line " + std::to_string(t.line_numbers[r]) + ", column '" +
               t.columns[c] + "'";
      };
      if (c == label) {
        KTF_CHECK(!is_missing(cell), where(), ": missing label");
        if (named_labels) {
          yp[r] = names.at(cell);
        } else {
          const char* first = cell.data() + (cell[0] == '+' ? 1 : 0);
          auto [end, ec] = std::from_chars(first, cell.data() + cell.size(), yp[r]);
          KTF_CHECK(ec == std::errc() && end == cell.data() + cell.size(), where(), ": label '",
                    cell, "' is not a class index (an integer too large)");
        }
        continue;
      }
      xp[r * f + k++] = feature_value(cell, where, o);
    }
  }
  if (!named_labels) {
    const int64_t r = first_bad_label(y, o.num_classes);
    if (r >= 0)
      throw Error("CSV file '" + path + "': line " + std::to_string(t.line_numbers[r]) +
                  ", column '" + t.columns[label] + "': label " + std::to_string(yp[r]) +
                  not_a_class_index(yp[r], o.num_classes));
  }
  return {x, y};
}

/// The CSV dataset: in-memory splits, and new CSV files read with the training file's feature
/// columns for --predict (by name when there is a header, else by position).
class CsvDataset : public TensorDataset, public InputFiles {
 public:
  CsvDataset(TensorSplit train, TensorSplit valid, PipelineConfig config, int64_t classes,
             std::vector<std::string> class_names, CsvOptions options,
             std::vector<std::string> columns, size_t label)
      : TensorDataset(std::move(train), std::move(valid), std::move(config), classes,
                      std::move(class_names)),
        options_(std::move(options)),
        columns_(std::move(columns)),
        label_(label) {}

  std::string input_format() const override { return "CSV"; }
  PipelineConfig input_pipeline() const override { return pipeline().for_validation(); }

  torch::Tensor read_inputs(const std::string& path) override {
    const Table t = read_table(path, options_);
    // Which column of `t` holds each feature of the training file.
    std::vector<size_t> from;
    if (options_.header) {
      for (size_t c = 0; c < columns_.size(); ++c) {
        if (c == label_) continue;
        auto it = std::find(t.columns.begin(), t.columns.end(), columns_[c]);
        if (it == t.columns.end()) {
          std::string features;
          for (size_t j = 0; j < columns_.size(); ++j)
            if (j != label_) features += (features.empty() ? "" : ", ") + columns_[j];
          throw Error("CSV file '" + path + "' has no column '" + excerpt(columns_[c]) +
                      "' (the run's feature columns are " + excerpt(features, 300) + ")");
        }
        from.push_back(static_cast<size_t>(it - t.columns.begin()));
      }
    } else {
      const size_t n = t.columns.size(), features = columns_.size() - 1;
      KTF_CHECK(n == columns_.size() || n == features, "CSV file '", path, "' has ", n,
                " columns; the run's has ", features, " feature columns and a label column (",
                features + 1, " columns, or ", features, " without the label)");
      for (size_t c = 0; c < n; ++c)
        if (n == features || c != label_) from.push_back(c);
    }
    const auto rows = static_cast<int64_t>(t.rows.size());
    const auto f = static_cast<int64_t>(from.size());
    auto x = torch::empty({rows, f}, torch::kFloat32);
    auto* xp = x.data_ptr<float>();
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t k = 0; k < f; ++k) {
        const size_t c = from[static_cast<size_t>(k)];
        auto where = [&] {
          return "CSV file '" + path + "': line " + std::to_string(t.line_numbers[r]) +
                 ", column '" + t.columns[c] + "'";
        };
        xp[r * f + k] = feature_value(t.rows[r][c], where, options_);
      }
    return x;
  }

 private:
  CsvOptions options_;
  std::vector<std::string> columns_;  ///< the training file's columns
  size_t label_;                      ///< the label column's index among them
};

bool is_integer(const std::string& s) {
  if (s.empty()) return false;
  size_t i = s[0] == '-' || s[0] == '+' ? 1 : 0;
  return i < s.size() &&
         std::all_of(s.begin() + i, s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

std::shared_ptr<Dataset> make_csv(const CsvOptions& o, BuildContext& ctx) {
  KTF_CHECK(o.delimiter.size() == 1, "delimiter must be one character, got '", o.delimiter, "'");
  auto config = PipelineConfig::from(o, ctx);
  KTF_CHECK(config.to_float, "dtype must be float32 for CSV data");
  double fraction = parse_validation(o.validation, false);
  KTF_CHECK(o.validation_file.empty() || fraction == 0,
            "give either validation_file or a validation fraction, not both");
  Table train = read_table(o.file, o);
  KTF_CHECK(train.columns.size() >= 2, "CSV file '", o.file,
            "' needs at least one feature column and a label column");
  size_t label = label_index(train, o.label_column, o.file);
  std::optional<Table> valid;
  if (!o.validation_file.empty()) {
    valid = read_table(o.validation_file, o);
    KTF_CHECK(valid->columns.size() == train.columns.size(), "CSV file '", o.validation_file,
              "' has ", valid->columns.size(), " columns but '", o.file, "' has ",
              train.columns.size());
  }
  bool named = false;
  std::map<std::string, int64_t> names;
  for (const Table* t : {&train, valid ? &*valid : nullptr}) {
    if (!t) continue;
    for (const auto& row : t->rows) {
      if (is_missing(row[label])) continue;
      if (!is_integer(row[label])) named = true;
      names.emplace(row[label], 0);
    }
  }
  std::vector<std::string> class_names;
  if (named) {
    int64_t i = 0;
    for (auto& [name, index] : names) {
      index = i++;
      class_names.push_back(name);
    }
  }
  TensorSplit tr = to_tensors(train, label, o.file, o, names, named), va;
  if (valid) va = to_tensors(*valid, label, o.validation_file, o, names, named);
  if (fraction > 0) std::tie(tr, va) = hold_out(tr, fraction, config.seed);
  int64_t classes = named ? static_cast<int64_t>(class_names.size())
                          : std::max(count_classes(tr.target), count_classes(va.target));
  if (o.num_classes > 0) {
    KTF_CHECK(classes <= o.num_classes, "labels go up to ", classes - 1, " but num_classes is ",
              o.num_classes);
    classes = o.num_classes;
  }
  return std::make_shared<CsvDataset>(std::move(tr), std::move(va), std::move(config), classes,
                                      std::move(class_names), o, train.columns, label);
}

}  // namespace

void register_csv(Registrar& r) {
  auto def = define<Dataset, CsvOptions>(
      "ktf.datasets.csv", "numeric feature columns and a class label column from CSV files");
  def.required("file", &CsvOptions::file, "CSV file of the training split (.gz accepted)")
      .arg("validation_file", &CsvOptions::validation_file,
           "CSV file of the validation split (optional)")
      .arg("validation", &CsvOptions::validation,
           "held-out fraction in (0, 1) when there is no validation_file; null = none")
      .choices({"none"})
      .above(0)
      .below(1)
      .arg("label_column", &CsvOptions::label_column,
           "label column: name or 0-based index; null = the last column")
      .min(0)
      .arg("header", &CsvOptions::header, "the first line names the columns")
      .arg("delimiter", &CsvOptions::delimiter, "one-character field separator")
      .non_empty()
      .arg("fill_value", &CsvOptions::fill_value,
           "value for missing cells (empty, NA, NaN); null = a missing cell is an error")
      .arg("num_classes", &CsvOptions::num_classes, "number of classes; 0 = from the labels")
      .min(0);
  add_pipeline_args(def).example(Json::object({{"file", std::string(kTestdataDir) + "/tiny.csv"},
                                               {"label_column", "label"},
                                               {"batch_size", 4}}));
  r.add(def.build(make_csv));
}

}  // namespace ktf::datasets
