// Gives a database created before ktl checksummed pages its page checksums, once.
// Thread-safety: a free function; run it before the process opens other connections to the
// file (JobStore does, at start-up).
#pragma once

#include <string>

namespace ktl::jobs {

// When the database at `path` has no reserved bytes: switches it out of WAL (which only the
// sole connection to the file can do), VACUUMs it INTO a new file with 8 reserved bytes per page,
// writes every page's checksum there, fsyncs it and renames it over the old file. Returns true
// when it did; false when nothing was needed (no file yet, already checksummed) or it cannot
// run now (another connection has the file open), the file left as it was. Throws on an I/O
// error (e.g. a full disk) with the original file intact.
bool add_page_checksums(const std::string& path);

}  // namespace ktl::jobs
