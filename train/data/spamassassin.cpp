#include "train/data/spamassassin.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <utility>

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

std::string trim(const std::string& s) {
  const auto a = s.find_first_not_of(" \t\r\n");
  if (a == std::string::npos) return "";
  return s.substr(a, s.find_last_not_of(" \t\r\n") - a + 1);
}

/// Quoted-printable (RFC 2045): "=XX" is a byte, "=" at a line end (white space may follow it)
/// joins the lines.
std::string decode_quoted_printable(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    size_t j = i + 1;
    if (s[i] == '=')
      while (j < s.size() && (s[j] == ' ' || s[j] == '\t')) ++j;
    if (s[i] != '=') {
      out.push_back(s[i]);
    } else if (j < s.size() && s[j] == '\n') {
      i = j;
    } else if (j + 1 < s.size() && s[j] == '\r' && s[j + 1] == '\n') {
      i = j + 1;
    } else if (i + 2 < s.size() && hex_value(s[i + 1]) >= 0 && hex_value(s[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2])));
      i += 2;
    } else {
      out.push_back('=');
    }
  }
  return out;
}

/// Base64 (RFC 2045 section 6.8): characters outside the alphabet (line breaks) are skipped,
/// decoding stops at the first "=" pad.
std::string decode_base64(const std::string& s) {
  std::string out;
  unsigned bits = 0;
  int nbits = 0;
  for (char c : s) {
    int v;
    if (c >= 'A' && c <= 'Z') v = c - 'A';
    else if (c >= 'a' && c <= 'z') v = c - 'a' + 26;
    else if (c >= '0' && c <= '9') v = c - '0' + 52;
    else if (c == '+') v = 62;
    else if (c == '/') v = 63;
    else if (c == '=') break;
    else continue;
    bits = (bits << 6) | static_cast<unsigned>(v);
    nbits += 6;
    if (nbits >= 8) {
      nbits -= 8;
      out.push_back(static_cast<char>((bits >> nbits) & 0xFF));
    }
  }
  return out;
}

/// RFC 2047 encoded words in a header ("=?iso-8859-1?Q?Caf=E9_au_lait?=", "=?utf-8?B?...?="):
/// the bytes are decoded, the charset is kept as it is (the tokenizer reads the bytes as UTF-8),
/// and white space between two adjacent encoded words is dropped.
std::string decode_header_words(const std::string& s) {
  std::string out;
  size_t i = 0;
  bool after_word = false;
  while (i < s.size()) {
    const auto start = s.find("=?", i);
    if (start == std::string::npos) {
      out += s.substr(i);
      break;
    }
    // =?charset?X?text?= : the charset runs to the first '?', the encoding is one letter. Each
    // search stops at the next "=?" or ends the loop, so a long damaged header stays linear.
    const auto q1 = s.find('?', start + 2);
    const bool shaped = q1 != std::string::npos && q1 + 2 < s.size() && s[q1 + 1] != '?' && s[q1 + 2] == '?';
    const auto q2 = q1 + 2;
    const auto end = shaped ? s.find("?=", q2 + 1) : std::string::npos;
    if (q1 == std::string::npos || (shaped && end == std::string::npos)) {  // no encoded word ends after here
      out += s.substr(i);
      break;
    }
    if (!shaped) {  // not an encoded word: "=?" is text
      out += s.substr(i, start + 2 - i);
      after_word = false;
      i = start + 2;
      continue;
    }
    const std::string between = s.substr(i, start - i);
    if (!(after_word && trim(between).empty())) out += between;
    const char enc = static_cast<char>(std::tolower(static_cast<unsigned char>(s[q1 + 1])));
    std::string text = s.substr(q2 + 1, end - q2 - 1);
    if (enc == 'b') {
      out += decode_base64(text);
    } else if (enc == 'q') {
      std::replace(text.begin(), text.end(), '_', ' ');
      out += decode_quoted_printable(text);
    } else {
      out += s.substr(start, end + 2 - start);
    }
    after_word = true;
    i = end + 2;
  }
  return out;
}

/// HTML to text: tags become a space, comments and the content of <style> and <script> go,
/// and the common character references are decoded (&amp; &lt; &gt; &quot; &nbsp; &#NN; &#xNN;).
std::string html_to_text(const std::string& s) {
  std::string out;
  const std::string ls = lower(s);
  size_t i = 0, next_close = 0;  // the first ">" at or after next_close's search start (npos: none left)
  bool close_known = false;
  while (i < s.size()) {
    const bool tag_start = s[i] == '<' && i + 1 < s.size() &&
                           (std::isalpha(static_cast<unsigned char>(s[i + 1])) || s[i + 1] == '/' || s[i + 1] == '!' ||
                            s[i + 1] == '?');
    if (tag_start) {
      if (ls.compare(i, 4, "<!--") == 0) {
        const auto e = ls.find("-->", i + 4);
        i = e == std::string::npos ? s.size() : e + 3;
        continue;
      }
      bool skipped = false;
      for (const char* name : {"style", "script"}) {
        const std::string open = std::string("<") + name;
        const size_t n = open.size();
        if (ls.compare(i, n, open) == 0 && i + n < ls.size() && (ls[i + n] == '>' || std::isspace(static_cast<unsigned char>(ls[i + n])))) {
          const auto e = ls.find(std::string("</") + name, i + n);
          const auto close = e == std::string::npos ? std::string::npos : ls.find('>', e);
          i = close == std::string::npos ? s.size() : close + 1;
          out.push_back(' ');
          skipped = true;
          break;
        }
      }
      if (skipped) continue;
      if (!close_known || (next_close != std::string::npos && next_close < i)) {
        next_close = s.find('>', i);
        close_known = true;
      }
      if (next_close == std::string::npos) {  // no ">" left: "<" is text
        out.push_back('<');
        ++i;
        continue;
      }
      out.push_back(' ');
      i = next_close + 1;
    } else if (s[i] == '&') {
      size_t semi = std::string::npos;  // within the 10 characters a reference takes, not the rest of the text
      for (size_t k = i + 1; k < s.size() && k <= i + 11; ++k)
        if (s[k] == ';') {
          semi = k;
          break;
        }
      std::string name = semi == std::string::npos || semi - i > 10 ? "" : ls.substr(i + 1, semi - i - 1);
      std::string rep;
      if (name == "amp") rep = "&";
      else if (name == "lt") rep = "<";
      else if (name == "gt") rep = ">";
      else if (name == "quot") rep = "\"";
      else if (name == "apos") rep = "'";
      else if (name == "nbsp") rep = " ";
      else if (name.size() > 1 && name[0] == '#') {
        long code = -1;
        const bool hex = name[1] == 'x';
        const auto digits = name.substr(hex ? 2 : 1);
        if (!digits.empty() && digits.size() <= 7 &&
            digits.find_first_not_of(hex ? "0123456789abcdef" : "0123456789") == std::string::npos)
          code = std::stol(digits, nullptr, hex ? 16 : 10);
        if (code > 0 && code < 0x80) rep = std::string(1, static_cast<char>(code));
        else if (code >= 0x80 && code < 0x800)
          rep = {static_cast<char>(0xC0 | (code >> 6)), static_cast<char>(0x80 | (code & 0x3F))};
        else if (code >= 0x800 && code < 0x10000)
          rep = {static_cast<char>(0xE0 | (code >> 12)), static_cast<char>(0x80 | ((code >> 6) & 0x3F)),
                 static_cast<char>(0x80 | (code & 0x3F))};
        else if (code >= 0x10000 && code < 0x110000)
          rep = {static_cast<char>(0xF0 | (code >> 18)), static_cast<char>(0x80 | ((code >> 12) & 0x3F)),
                 static_cast<char>(0x80 | ((code >> 6) & 0x3F)), static_cast<char>(0x80 | (code & 0x3F))};
      }
      if (rep.empty()) {
        out.push_back('&');
        ++i;
      } else {
        out += rep;
        i = semi + 1;
      }
    } else {
      out.push_back(s[i++]);
    }
  }
  return out;
}

/// The header fields of one MIME entity that matter here, values unfolded.
struct Headers {
  std::string subject, type, encoding;  // type as written (a boundary's case matters); encoding lower-cased
};

/// Reads the header block of s (it ends at the first empty line; a line starting with white
/// space continues the field before it) and returns where the body starts.
size_t read_headers(const std::string& s, Headers& h) {
  size_t pos = 0;
  std::string name, value;
  auto flush = [&] {
    if (name == "subject") h.subject = trim(value);
    else if (name == "content-type") h.type = trim(value);
    else if (name == "content-transfer-encoding") h.encoding = lower(trim(value));
    name.clear();
    value.clear();
  };
  while (pos < s.size()) {
    auto eol = s.find('\n', pos);
    if (eol == std::string::npos) eol = s.size();
    std::string line = s.substr(pos, eol - pos);
    pos = eol + 1;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) break;
    if (line[0] == ' ' || line[0] == '\t') {
      if (!name.empty()) value += " " + trim(line);
      continue;
    }
    flush();
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    name = lower(trim(line.substr(0, colon)));
    value = line.substr(colon + 1);
  }
  flush();
  return std::min(pos, s.size());
}

/// A parameter of a Content-Type value ("boundary"), quoted or not, as written (case kept).
std::string type_parameter(const std::string& type_raw, const std::string& param) {
  const std::string l = lower(type_raw);
  size_t at = 0;
  while ((at = l.find(param, at)) != std::string::npos) {
    const bool starts = at > 0 && (l[at - 1] == ';' || std::isspace(static_cast<unsigned char>(l[at - 1])));
    size_t eq = at + param.size();
    while (eq < l.size() && std::isspace(static_cast<unsigned char>(l[eq]))) ++eq;
    if (starts && eq < l.size() && l[eq] == '=') {
      size_t v = eq + 1;
      while (v < l.size() && std::isspace(static_cast<unsigned char>(l[v]))) ++v;
      if (v < l.size() && type_raw[v] == '"') {
        const auto close = type_raw.find('"', v + 1);
        return type_raw.substr(v + 1, close == std::string::npos ? std::string::npos : close - v - 1);
      }
      const auto stop = type_raw.find_first_of("; \t", v);
      return type_raw.substr(v, stop == std::string::npos ? std::string::npos : stop - v);
    }
    at += param.size();
  }
  return "";
}

/// The media type of an entity, lower-cased and without parameters; text/plain when none is given.
std::string media_type(const Headers& h) {
  return h.type.empty() ? "text/plain" : lower(trim(h.type.substr(0, h.type.find(';'))));
}

/// The parts of a multipart body: the text between "--boundary" lines, up to "--boundary--".
/// A delimiter line is "--boundary", then "--" for the last one, then only white space.
std::vector<std::string> split_parts(const std::string& body, const std::string& boundary) {
  std::vector<std::string> parts;
  const std::string delim = "--" + boundary;
  size_t pos = 0;
  long start = -1;  // where the current part begins, -1 in the preamble
  while (pos <= body.size()) {
    auto eol = body.find('\n', pos);
    if (eol == std::string::npos) eol = body.size();
    if (body.compare(pos, delim.size(), delim) == 0) {
      size_t after = pos + delim.size();
      const bool last = body.compare(after, 2, "--") == 0;
      if (last) after += 2;
      while (after < eol && (body[after] == ' ' || body[after] == '\t' || body[after] == '\r')) ++after;
      if (after == eol) {
        if (start >= 0) parts.push_back(body.substr(static_cast<size_t>(start), pos - static_cast<size_t>(start)));
        if (last) return parts;
        start = static_cast<long>(std::min(eol + 1, body.size()));
      }
    }
    pos = eol + 1;
  }
  if (start >= 0 && static_cast<size_t>(start) < body.size()) parts.push_back(body.substr(static_cast<size_t>(start)));
  return parts;
}

/// The readable text of one MIME entity (RFC 2045/2046): a text part decoded (base64 or
/// quoted-printable; HTML to text), a multipart's parts in order (of multipart/alternative
/// the text/plain one; with no delimiter line in it, the body as text), a message/rfc822 part's
/// subject and text, and for any other part (an image, an attachment) the line
/// "[attachment: <media type>]".
std::string entity_text(const Headers& h, const std::string& body, int depth) {
  const std::string media = media_type(h);
  if (media.rfind("multipart/", 0) == 0 && depth < 8) {
    const auto boundary = type_parameter(h.type, "boundary");
    if (!boundary.empty()) {
      std::vector<std::pair<Headers, std::string>> parts;
      for (const auto& p : split_parts(body, boundary)) {
        Headers ph;
        const auto at = read_headers(p, ph);
        parts.push_back({ph, p.substr(at)});
      }
      if (parts.empty()) {  // the boundary is never used: the body is text
        Headers text = h;
        text.type.clear();
        return entity_text(text, body, depth + 1);
      }
      if (media == "multipart/alternative") {
        for (const auto& [ph, pb] : parts)
          if (media_type(ph) == "text/plain") return entity_text(ph, pb, depth + 1);
        return entity_text(parts.front().first, parts.front().second, depth + 1);
      }
      std::string out;
      for (const auto& [ph, pb] : parts) {  // multipart/mixed, related, ...
        const auto t = entity_text(ph, pb, depth + 1);
        if (!t.empty()) out += (out.empty() ? "" : "\n") + t;
      }
      return out;
    }
  }
  if (media == "message/rfc822" && depth < 8) {
    Headers inner;
    const auto at = read_headers(body, inner);
    return "Subject: " + decode_header_words(inner.subject) + "\n" + entity_text(inner, body.substr(at), depth + 1);
  }
  if (media.rfind("text/", 0) != 0 && media.rfind("multipart/", 0) != 0) return "[attachment: " + media + "]";
  std::string text = body;
  if (h.encoding.find("base64") != std::string::npos) text = decode_base64(text);
  else if (h.encoding.find("quoted-printable") != std::string::npos) text = decode_quoted_printable(text);
  if (media == "text/html" || lower(text.substr(0, 2000)).find("<html") != std::string::npos) text = html_to_text(text);
  return text;
}

// A message's text for classification: its subject line, then its body's text.
std::string subject_and_body(const std::string& subject, const std::string& body) {
  return "Subject: " + subject + "\n" + body;
}

// The subject and the body's text of a raw message, apart.
std::pair<std::string, std::string> email_parts(const std::string& raw) {
  Headers h;
  const auto at = read_headers(raw, h);
  return {decode_header_words(h.subject), entity_text(h, raw.substr(at), 0)};
}

}  // namespace

std::string email_text(const std::string& raw) {
  const auto [subject, body] = email_parts(raw);
  return subject_and_body(subject, body);
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
      if (!fs::is_regular_file(dir / name))
        throw UsageError("data.root: " + (dir / name).string() + " is not a regular file; delete " + root +
                         " and run scripts/fetch-data spamassassin");
      std::ifstream f(dir / name, std::ios::binary);
      if (!f)
        throw UsageError("data.root: " + (dir / name).string() + " can't be read; check its permissions, or delete " +
                         root + " and run scripts/fetch-data spamassassin");
      std::string raw((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
      auto [subject, body] = email_parts(raw);
      std::string key;  // the body without its whitespace: its split
      for (char c : body)
        if (!std::isspace(static_cast<unsigned char>(c))) key += c;
      auto in = split_by_hash(key, 10, 10);
      if (split != "all" && in != split) continue;
      out.push_back({std::string(folder) + "/" + name.substr(0, name.size() - 4), subject_and_body(subject, body),
                     std::string(folder).rfind("spam", 0) == 0, std::move(in)});
    }
  }
  if (out.empty())
    throw UsageError("data.root: the " + split + " messages under " + root + " are none; run scripts/fetch-data spamassassin");
  return out;
}

}  // namespace zoo
