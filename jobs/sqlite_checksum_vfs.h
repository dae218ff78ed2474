// Page checksums for SQLite databases (SQLite has none: a flipped byte inside a row passes
// PRAGMA integrity_check). A VFS shim over the default one ("unix"), in the spirit of SQLite's
// ext/misc/cksumvfs.c and with the same checksum: when the database header says 8 reserved
// bytes per page (byte 20), every page written to the MAIN database file gets an 8-byte checksum
// of the rest of the page in those bytes, and every page read from it is checked (a mismatch
// fails the read with SQLITE_IOERR_DATA). Files without the reserve pass through untouched.
//
// Only the main file is handled: in WAL mode a page reaches the main file when a checkpoint
// copies it there, through the main file's xWrite, so it is checksummed then. WAL frames carry
// SQLite's own checksums; the shim never touches them (changing a page's bytes after SQLite
// checksummed its frame would make a crash recovery drop the frame).
//
// Thread-safety: registration is thread-safe (std::call_once); each open file belongs to one
// connection, which SQLite serialises; the free functions are thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace ktl::jobs {

constexpr int kPageChecksumBytes = 8;  // the reserve a database needs for checksums

// Registers the shim once (not as the default VFS) and returns its name for sqlite3_open_v2.
// Throws std::runtime_error when SQLite refuses.
const char* checksum_vfs_name();

// The checksum of a page's first n - 8 bytes, as stored in its last 8 (n: a multiple of 8).
void page_checksum(const unsigned char* page, size_t n, unsigned char out[8]);

struct DbFileHeader {
  bool is_database = false;  // starts with "SQLite format 3\0"
  uint32_t page_size = 0;
  int reserved_bytes = 0;
};
// Reads the 100-byte header of a database file (is_database false when it is not one, or is
// empty). Throws std::runtime_error when the file cannot be read.
DbFileHeader read_db_header(const std::string& path);

// Writes the checksum of every page of a database file with 8 reserved bytes (the upgrade of a
// file that no connection has open), then fsyncs it. Throws std::runtime_error naming the path.
void stamp_page_checksums(const std::string& path);

// 1-based numbers of the pages whose stored checksum does not match (empty when the file has
// no checksums). Reads the main file only: run it on a closed database (tests, diagnostics).
std::vector<int64_t> find_bad_page_checksums(const std::string& path);

}  // namespace ktl::jobs
