// MediaWiki wikitext to plain text. Pure function, thread-safe.
#pragma once

#include <string>
#include <string_view>

namespace ktl {

// Removes comments, <ref>s, templates {{..}}, tables {|..|}, file/category/interlanguage links,
// <math>/<gallery>/<source>-style blocks and remaining tags; keeps link text ([[a|b]] -> b,
// [[a]] -> a, [http://x y] -> y), heading text, and list item text; drops bold/italic quotes
// and magic words (__TOC__). Entities are decoded.
std::string strip_wiki_markup(std::string_view wikitext);

}  // namespace ktl
