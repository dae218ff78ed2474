// HTML to plain text for the data pipeline. Pure functions, thread-safe.
#pragma once

#include <string>
#include <string_view>

namespace ktl {

// Decodes character references: named (&amp; &lt; &gt; &quot; &apos; &nbsp; and a few common
// typographic ones) and numeric (&#44608; &#xAC00;). Unknown references are kept as written.
std::string decode_html_entities(std::string_view s);

// A whole HTML page to text: drops <head>, <script>, <style>, <nav>, <header>, <footer>, <aside>,
// <noscript>, <template>, <svg> and comments; block elements (p, div, li, h1..h6, br, tr, ...)
// become line breaks; entities decoded. The result still needs TextCleaner (whitespace etc.).
std::string html_to_text(std::string_view html);

// Removes tag-like runs (<b>, </p>, <br/>, <!-- .. -->) from text that is mostly plain, and
// decodes entities. Only '<' followed by an ASCII letter, '/' or '!' starts a tag, so Korean
// uses of angle brackets such as <책> survive.
std::string strip_html_tags(std::string_view s);

}  // namespace ktl
