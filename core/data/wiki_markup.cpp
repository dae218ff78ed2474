#include "core/data/wiki_markup.h"

#include <cctype>
#include <string>

#include "core/data/html_text.h"

namespace ktl {
namespace {

std::string lower_ascii(std::string_view s) {
  std::string o(s);
  for (auto& c : o) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return o;
}

// Removes every balanced region open..close (nesting allowed). An unclosed region runs to the end.
std::string remove_nested(std::string_view s, std::string_view open, std::string_view close) {
  std::string out;
  out.reserve(s.size());
  int depth = 0;
  for (size_t i = 0; i < s.size();) {
    if (s.compare(i, open.size(), open) == 0) {
      ++depth;
      i += open.size();
    } else if (depth > 0 && s.compare(i, close.size(), close) == 0) {
      --depth;
      i += close.size();
    } else {
      if (depth == 0) out += s[i];
      ++i;
    }
  }
  return out;
}

// Removes <tag ...>...</tag> blocks (case-insensitive) and self-closing <tag .../>.
std::string remove_element(std::string_view s, const std::string& tag) {
  std::string out;
  const std::string low = lower_ascii(s);
  const std::string open = "<" + tag, close = "</" + tag + ">";
  size_t i = 0;
  while (i < s.size()) {
    size_t at = low.find(open, i);
    if (at == std::string::npos) break;
    const char after = at + open.size() < low.size() ? low[at + open.size()] : '>';
    if (after != '>' && after != ' ' && after != '/' && after != '\t' && after != '\n') {
      out.append(s.substr(i, at + 1 - i));
      i = at + 1;
      continue;
    }
    out.append(s.substr(i, at - i));
    size_t gt = low.find('>', at);
    if (gt == std::string::npos) return out;
    if (low[gt - 1] == '/') {
      i = gt + 1;
      continue;
    }
    size_t end = low.find(close, gt);
    i = end == std::string::npos ? s.size() : end + close.size();
  }
  if (i < s.size()) out.append(s.substr(i));
  return out;
}

bool is_dropped_link(std::string_view target) {
  static const char* kPrefixes[] = {
      "file:", "image:", "파일:", "그림:", "category:", "분류:", "media:", "미디어:"};
  std::string t = lower_ascii(target.substr(0, 16));
  size_t b = t.find_first_not_of(" :");
  if (b != std::string::npos) t = t.substr(b);
  for (const char* p : kPrefixes)
    if (t.rfind(p, 0) == 0) return true;
  // Interlanguage links: [[en:Title]], [[ja:...]].
  size_t colon = t.find(':');
  if (colon >= 2 && colon <= 3 && colon != std::string::npos) {
    bool all_lower = true;
    for (size_t k = 0; k < colon; ++k) all_lower &= (t[k] >= 'a' && t[k] <= 'z');
    if (all_lower) return true;
  }
  return false;
}

// [[target|text]] -> text, [[target]] -> target, file/category links removed.
std::string replace_links(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    if (s.compare(i, 2, "[[") != 0) {
      out += s[i++];
      continue;
    }
    // Find the matching ]] allowing nested [[..]] (captions of files contain links).
    int depth = 0;
    size_t j = i, end = std::string_view::npos;
    while (j + 1 < s.size()) {
      if (s.compare(j, 2, "[[") == 0) {
        ++depth;
        j += 2;
      } else if (s.compare(j, 2, "]]") == 0) {
        j += 2;
        if (--depth == 0) {
          end = j - 2;
          break;
        }
      } else {
        ++j;
      }
    }
    if (end == std::string_view::npos) {  // unclosed: drop the brackets, keep the text
      i += 2;
      continue;
    }
    j = end;
    std::string_view inner = s.substr(i + 2, j - i - 2);
    if (!is_dropped_link(inner)) {
      size_t bar = inner.rfind('|');
      std::string_view text = bar == std::string_view::npos ? inner : inner.substr(bar + 1);
      if (bar == std::string_view::npos && text.find('#') != std::string_view::npos)
        text = text.substr(0, text.find('#'));
      out += replace_links(text);
    }
    i = j + 2;
  }
  return out;
}

// [http://x text] -> text; [http://x] -> "".
std::string replace_external_links(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size();) {
    if (s[i] == '[' && (s.compare(i + 1, 4, "http") == 0 || s.compare(i + 1, 2, "//") == 0)) {
      size_t close = s.find(']', i);
      if (close != std::string_view::npos) {
        std::string_view inner = s.substr(i + 1, close - i - 1);
        size_t sp = inner.find(' ');
        if (sp != std::string_view::npos) out.append(inner.substr(sp + 1));
        i = close + 1;
        continue;
      }
    }
    out += s[i++];
  }
  return out;
}

// Per line: headings "== X ==" -> "X", list markers and indentation removed, quotes dropped.
std::string clean_lines(std::string_view s) {
  std::string out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t nl = s.find('\n', start);
    if (nl == std::string_view::npos) nl = s.size();
    std::string line(s.substr(start, nl - start));
    start = nl + 1;
    size_t b = line.find_first_not_of("*#:; ");
    if (b == std::string::npos) b = line.size();
    if (!line.empty() && (line[0] == '*' || line[0] == '#' || line[0] == ':' || line[0] == ';'))
      line = line.substr(b);
    if (!line.empty() && line[0] == '=') {
      size_t l = line.find_first_not_of("= ");
      size_t r = line.find_last_not_of("= ");
      line = (l == std::string::npos || r < l) ? "" : line.substr(l, r - l + 1);
    }
    if (line.rfind("----", 0) == 0) line.clear();
    std::string q;
    for (size_t k = 0; k < line.size(); ++k) {
      if (line.compare(k, 2, "''") == 0) {
        while (k < line.size() && line[k] == '\'') ++k;
        --k;
        continue;
      }
      q += line[k];
    }
    out += q;
    out += '\n';
  }
  return out;
}

std::string remove_magic_words(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size();) {
    if (s.compare(i, 2, "__") == 0) {
      size_t e = s.find("__", i + 2);
      if (e != std::string_view::npos && e - i <= 24) {
        bool upper = true;
        for (size_t k = i + 2; k < e; ++k)
          upper &= (std::isupper(static_cast<unsigned char>(s[k])) != 0);
        if (upper && e > i + 2) {
          i = e + 2;
          continue;
        }
      }
    }
    out += s[i++];
  }
  return out;
}

}  // namespace

std::string strip_wiki_markup(std::string_view wikitext) {
  std::string t = remove_nested(wikitext, "<!--", "-->");
  for (const char* tag : {"ref", "math", "gallery", "source", "syntaxhighlight", "timeline",
                          "score", "graph", "templatedata", "nowiki", "pre", "table"})
    t = remove_element(t, tag);
  t = remove_nested(t, "{{", "}}");
  t = remove_nested(t, "{|", "|}");
  t = replace_links(t);
  t = replace_external_links(t);
  t = remove_magic_words(t);
  t = strip_html_tags(t);  // leftover <br>, <small>, <sup>; decodes entities
  return clean_lines(t);
}

}  // namespace ktl
