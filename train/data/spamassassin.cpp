#include "train/data/spamassassin.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "train/config.h"
#include "train/data/split.h"

namespace fs = std::filesystem;

namespace zoo {
namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

/// Quoted-printable (RFC 2045): "=XX" is a byte, "=" at a line end joins the lines.
std::string decode_quoted_printable(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '=') {
      out.push_back(s[i]);
    } else if (i + 1 < s.size() && s[i + 1] == '\n') {
      ++i;
    } else if (i + 2 < s.size() && s[i + 1] == '\r' && s[i + 2] == '\n') {
      i += 2;
    } else if (i + 2 < s.size() && hex_value(s[i + 1]) >= 0 && hex_value(s[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2])));
      i += 2;
    } else {
      out.push_back('=');
    }
  }
  return out;
}

std::string strip_html_tags(const std::string& s) {
  std::string out;
  bool in_tag = false;
  for (char c : s) {
    if (c == '<') in_tag = true;
    else if (c == '>' && in_tag) in_tag = false, out.push_back(' ');
    else if (!in_tag) out.push_back(c);
  }
  return out;
}

}  // namespace

std::string email_text(const std::string& raw) {
  std::string subject, encoding, type, line;
  std::istringstream in(raw);
  std::string last_header;
  // Headers end at the first empty line; continuation lines start with white space.
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) break;
    if ((line[0] == ' ' || line[0] == '\t') && last_header == "subject") {
      const auto start = line.find_first_not_of(" \t");
      if (start != std::string::npos) subject += " " + line.substr(start);
      continue;
    }
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    last_header = lower(line.substr(0, colon));
    auto value = line.substr(colon + 1);
    if (!value.empty() && value[0] == ' ') value.erase(0, 1);
    if (last_header == "subject") subject = value;
    else if (last_header == "content-transfer-encoding") encoding = lower(value);
    else if (last_header == "content-type") type = lower(value);
  }
  std::string body((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (encoding.find("quoted-printable") != std::string::npos) body = decode_quoted_printable(body);
  if (type.find("html") != std::string::npos || lower(body.substr(0, 2000)).find("<html") != std::string::npos)
    body = strip_html_tags(body);
  return "Subject: " + subject + "\n" + body;
}

std::vector<EmailMessage> load_spamassassin(const std::string& root, const std::string& split) {
  if (split != "train" && split != "val" && split != "test" && split != "all")
    throw UsageError("spamassassin split '" + split + "': expected train, val, test or all");
  std::vector<EmailMessage> out;
  for (const char* folder : {"easy-ham-1", "easy-ham-2", "hard-ham-1", "spam-1", "spam-2"}) {
    const auto dir = fs::path(root) / "data" / folder;
    if (!fs::is_directory(dir))
      throw UsageError("data.root: " + dir.string() + " is missing; run scripts/fetch-data spamassassin (or set data.root)");
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir))
      if (e.path().extension() == ".txt") names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    for (const auto& name : names) {
      const auto dot = name.find('.');
      const auto md5 = name.substr(dot + 1, name.size() - dot - 5);  // NNNNN.<md5>.txt
      if (split != "all" && split_by_hash(md5, 10, 10) != split) continue;
      std::ifstream f(dir / name, std::ios::binary);
      std::string raw((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
      out.push_back({std::string(folder) + "/" + name.substr(0, name.size() - 4), email_text(raw),
                     std::string(folder).rfind("spam", 0) == 0});
    }
  }
  if (out.empty()) throw UsageError("data.root: " + root + " holds no messages; run scripts/fetch-data spamassassin");
  return out;
}

}  // namespace zoo
