#include "core/data/html_text.h"

#include <cctype>
#include <cstring>
#include <unordered_map>
#include <unordered_set>

#include "core/base/utf8_util.h"

namespace ktl {
namespace {

const std::unordered_map<std::string_view, int32_t>& named_entities() {
  static const std::unordered_map<std::string_view, int32_t> m = {
      {"amp", '&'},      {"lt", '<'},       {"gt", '>'},       {"quot", '"'},
      {"apos", '\''},    {"nbsp", 0xA0},    {"middot", 0xB7},  {"hellip", 0x2026},
      {"ndash", 0x2013}, {"mdash", 0x2014}, {"lsquo", 0x2018}, {"rsquo", 0x2019},
      {"ldquo", 0x201C}, {"rdquo", 0x201D}, {"bull", 0x2022},  {"copy", 0xA9},
      {"reg", 0xAE},     {"trade", 0x2122}, {"times", 0xD7},   {"larr", 0x2190},
      {"rarr", 0x2192},  {"laquo", 0xAB},   {"raquo", 0xBB},   {"shy", 0xAD},
      {"zwj", 0x200D},   {"zwnj", 0x200C},  {"ensp", 0x2002},  {"emsp", 0x2003},
      {"thinsp", 0x2009}};
  return m;
}

bool is_block_tag(std::string_view name) {
  static const std::unordered_set<std::string_view> s = {
      "p",    "div",        "br",     "li",         "ul",      "ol",    "h1",      "h2",
      "h3",   "h4",         "h5",     "h6",         "tr",      "table", "section", "article",
      "pre",  "blockquote", "dd",     "dt",         "dl",      "title", "hr",      "td",
      "th",   "main",       "figure", "figcaption", "caption", "tbody", "thead",   "body",
      "html", "form",       "center", "address"};
  return s.count(name) > 0;
}

bool is_skipped_tag(std::string_view name) {
  static const std::unordered_set<std::string_view> s = {
      "head",     "script", "style", "nav",    "header", "footer", "aside", "noscript",
      "template", "svg",    "math",  "button", "select", "iframe", "object"};
  return s.count(name) > 0;
}

std::string lower(std::string_view s) {
  std::string o(s);
  for (auto& c : o) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return o;
}

// Parses "<...>" at s[i] (s[i] == '<'); returns the lowercase tag name, sets closing and the
// end offset (one past '>'). Empty name for comments/doctype.
std::string parse_tag(std::string_view s, size_t i, bool* closing, size_t* end) {
  size_t j = i + 1;
  *closing = j < s.size() && s[j] == '/';
  if (*closing) ++j;
  size_t k = j;
  while (k < s.size() && (std::isalnum(static_cast<unsigned char>(s[k])) || s[k] == '-')) ++k;
  size_t gt = s.find('>', k);
  *end = gt == std::string_view::npos ? s.size() : gt + 1;
  return lower(s.substr(j, k - j));
}

}  // namespace

std::string decode_html_entities(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    if (s[i] != '&') {
      out += s[i++];
      continue;
    }
    size_t semi = s.find(';', i + 1);
    if (semi == std::string_view::npos || semi - i > 12) {
      out += s[i++];
      continue;
    }
    std::string_view ref = s.substr(i + 1, semi - i - 1);
    int32_t cp = -1;
    if (!ref.empty() && ref[0] == '#') {
      const bool hex = ref.size() > 1 && (ref[1] == 'x' || ref[1] == 'X');
      std::string digits(ref.substr(hex ? 2 : 1));
      char* endp = nullptr;
      long v = digits.empty() ? -1 : std::strtol(digits.c_str(), &endp, hex ? 16 : 10);
      if (endp && *endp == '\0' && v > 0 && v <= 0x10FFFF && !(v >= 0xD800 && v <= 0xDFFF))
        cp = static_cast<int32_t>(v);
    } else if (auto it = named_entities().find(ref); it != named_entities().end()) {
      cp = it->second;
    }
    if (cp < 0) {
      out += s[i++];
      continue;
    }
    utf8::append(out, cp);
    i = semi + 1;
  }
  return out;
}

std::string html_to_text(std::string_view html) {
  std::string out;
  out.reserve(html.size() / 2);
  std::string skipping;  // name of the element whose content is being dropped
  int skip_depth = 0;
  for (size_t i = 0; i < html.size();) {
    if (html[i] != '<') {
      size_t lt = html.find('<', i);
      if (lt == std::string_view::npos) lt = html.size();
      if (skipping.empty()) out.append(html.substr(i, lt - i));
      i = lt;
      continue;
    }
    if (html.compare(i, 4, "<!--") == 0) {
      size_t e = html.find("-->", i + 4);
      i = e == std::string_view::npos ? html.size() : e + 3;
      continue;
    }
    bool closing = false;
    size_t end = 0;
    std::string name = parse_tag(html, i, &closing, &end);
    const bool self_closing = end >= 2 && html[end - 2] == '/';
    if (!skipping.empty()) {
      if (name == skipping && !self_closing) skip_depth += closing ? -1 : 1;
      if (skip_depth == 0) skipping.clear();
    } else if (!closing && !self_closing && is_skipped_tag(name)) {
      skipping = name;
      skip_depth = 1;
    } else if (is_block_tag(name)) {
      out += '\n';
    } else if (name == "td" || name == "th") {
      out += ' ';
    }
    i = end;
  }
  return decode_html_entities(out);
}

std::string strip_html_tags(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    if (s[i] == '<' && i + 1 < s.size()) {
      const unsigned char n = static_cast<unsigned char>(s[i + 1]);
      if (std::isalpha(n) || n == '/' || n == '!') {
        size_t gt = s.find('>', i + 1);
        size_t next_lt = s.find('<', i + 1);
        // A tag closes before the next '<' and within a sane length.
        if (gt != std::string_view::npos && gt - i < 512 &&
            (next_lt == std::string_view::npos || gt < next_lt)) {
          bool closing = false;
          size_t end = 0;
          std::string name = parse_tag(s, i, &closing, &end);
          if (is_block_tag(name)) out += '\n';  // inline tags vanish without a space
          i = gt + 1;
          continue;
        }
      }
    }
    out += s[i++];
  }
  return decode_html_entities(out);
}

}  // namespace ktl
