#include "cli/data_dir_doctor.h"

#include <signal.h>
#include <sqlite3.h>

#include <cerrno>
#include <fstream>
#include <initializer_list>
#include <regex>
#include <stdexcept>

#include "core/data/token_shard.h"
#include "core/model/checkpoint_meta.h"
#include "core/tokenizer/tokenizer.h"
#include "jobs/sqlite_db.h"

namespace ktl::cli {

namespace fs = std::filesystem;

namespace {

// Messages of the checks start with the file they are about ("<path>: <problem>"); split them
// so the report (and --json) has the path and the problem apart.
void add_message(DoctorReport& r, const fs::path& fallback, const std::string& msg) {
  const std::string base = fallback.string();
  if (msg.rfind(base, 0) == 0) {
    const size_t colon = msg.find(": ", base.size());
    if (colon != std::string::npos) {
      r.add(msg.substr(0, colon), msg.substr(colon + 2));
      return;
    }
  }
  r.add(fallback, msg);
}

bool starts_with(const fs::path& file, const char* magic, size_t n) {
  std::ifstream in(file, std::ios::binary);
  std::string head(n, '\0');
  return in.read(head.data(), static_cast<std::streamsize>(n)) && head.compare(0, n, magic, n) == 0;
}

bool process_alive(long pid) {
  return pid > 0 && (::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM);
}

// "<name>.tmp-<pid>", "<name>.old-<pid>" (an atomic directory or file write), and
// "<db>.checksums-<pid>" (the page-checksum upgrade): left behind by a process that died.
// True when `p` is one (reported as a warning unless its writer still runs).
bool check_leftover(const fs::path& p, DoctorReport& r) {
  static const std::regex re(R"(.+\.(tmp|old|checksums)-([0-9]+))");
  std::smatch m;
  const std::string name = p.filename().string();
  if (!std::regex_match(name, m, re)) return false;
  if (!process_alive(std::stol(m[2].str())))
    r.add(p, "stale leftover of an interrupted write (process " + m[2].str() +
                 " is gone); safe to delete",
          /*warning=*/true);
  return true;
}

std::string sqlite_problem(const jobs::SqliteError& e) {
  if (e.code == SQLITE_IOERR_DATA) return "page checksum mismatch: a page changed on disk";
  return e.corrupt() ? std::string("database corrupt: ") + e.what() : std::string(e.what());
}

// integrity_check reports a page it cannot read as "unable to get the page. error code=N";
// N = SQLITE_IOERR_DATA is the checksum shim refusing it.
std::string integrity_line(std::string line) {
  const std::string header = "*** in database main ***\n";
  if (line.rfind(header, 0) == 0) line.erase(0, header.size());
  const std::string unreadable =
      "unable to get the page. error code=" + std::to_string(SQLITE_IOERR_DATA);
  if (const size_t at = line.find(unreadable); at != std::string::npos)
    line.replace(at, unreadable.size(), "page checksum mismatch: the page changed on disk");
  return line;
}

}  // namespace

bool DoctorReport::ok() const {
  for (const auto& f : findings)
    if (!f.warning) return false;
  return true;
}

void DoctorReport::add(const fs::path& path, const std::string& problem, bool warning) {
  findings.push_back({path.string(), problem, warning});
}

void doctor_check_database(const fs::path& file, DoctorReport& r) {
  ++r.databases;
  try {
    jobs::SqliteOptions o;
    o.create = false;
    o.wal = false;  // read as it is; the checksum VFS verifies every page integrity_check reads
    jobs::SqliteDb db(file.string(), o);
    jobs::Statement st = db.prepare("PRAGMA integrity_check");
    while (st.step())
      if (st.col_text(0) != "ok") r.add(file, integrity_line(st.col_text(0)));
    if (!db.has_page_checksums())
      r.add(file, "no page checksums yet (ktl serve adds them at its next start)", true);
  } catch (const jobs::SqliteError& e) {
    // integrity_check may stop with the read error it already reported as a row.
    const bool reported = !r.findings.empty() && r.findings.back().path == file.string();
    if (!reported) r.add(file, sqlite_problem(e));
  } catch (const std::exception& e) {
    add_message(r, file, e.what());
  }
}

void doctor_check_checkpoint(const fs::path& dir, DoctorReport& r) {
  ++r.checkpoints;
  const auto problems = verify_checkpoint_files(dir.string(), /*check_hashes=*/true);
  for (const std::string& problem : problems) add_message(r, dir, problem);
  // A checkpoint from before the manifest has only its weights checksummed: load its tokenizer.
  std::error_code ec;
  if (problems.empty() && read_checkpoint_meta(dir.string()).file_sha256.empty() &&
      fs::exists(dir / "tokenizer.model", ec))
    doctor_check_tokenizer(dir / "tokenizer.model", r);
}

// The tokens' checksum (shards written since it exists), every token inside the vocabulary, one
// end-of-document id per document, and the last token one: what a complete shard has.
void doctor_check_shard(const fs::path& file, DoctorReport& r) {
  ++r.shards;
  try {
    const auto shard = TokenShard::open(file);  // header, version, width, size
    if (std::string bad = shard->verify(); !bad.empty()) {  // the tokens' checksum
      add_message(r, file, bad);
      return;
    }
    const TokenShardHeader& h = shard->header();
    uint64_t eos = 0;
    for (uint64_t i = 0; i < shard->size(); ++i) {
      const uint32_t id = shard->get(i);
      if (id >= h.vocab_size) {
        r.add(file, "token " + std::to_string(i) + " is " + std::to_string(id) +
                        ", outside the vocabulary (" + std::to_string(h.vocab_size) + ")");
        return;
      }
      eos += id == h.eos_id;
    }
    if (eos != h.n_docs)
      r.add(file, std::to_string(eos) + " end-of-document tokens but the header says " +
                      std::to_string(h.n_docs) + " documents");
    else if (shard->size() > 0 && shard->get(shard->size() - 1) != h.eos_id)
      r.add(file, "does not end with an end-of-document token");
  } catch (const std::exception& e) {
    add_message(r, file, e.what());
  }
}

void doctor_check_tokenizer(const fs::path& file, DoctorReport& r) {
  ++r.tokenizers;
  try {
    if (Tokenizer::load(file.string())->vocab_size() <= 0) r.add(file, "empty vocabulary");
  } catch (const std::exception& e) {
    add_message(r, file, e.what());
  }
}

// latest, best: must point at a complete checkpoint (the link is what `--model` and resume use).
void doctor_check_link(const fs::path& link, DoctorReport& r) {
  std::error_code ec;
  fs::path target = fs::read_symlink(link, ec);
  if (ec) return r.add(link, "unreadable link: " + ec.message());
  const fs::path resolved = target.is_absolute() ? target : link.parent_path() / target;
  if (!fs::exists(resolved, ec))
    return r.add(link, "broken link: " + target.string() + " does not exist");
  if (!fs::is_directory(resolved, ec)) return;  // a link to a file: not a checkpoint link
  if (!fs::exists(resolved / "meta.json", ec))
    return r.add(link, "points at " + target.string() + ", not a complete checkpoint");
  for (const std::string& problem : verify_checkpoint_files(resolved.string(), false))
    r.add(link, "points at a checkpoint with a problem: " + problem);
}

namespace {

bool has_extension(const fs::path& p, std::initializer_list<const char*> exts) {
  for (const char* e : exts)
    if (p.extension() == e) return true;
  return false;
}

void check_file(const fs::path& p, DoctorReport& r) {
  const std::string name = p.filename().string();
  if (has_extension(p, {".db", ".sqlite", ".sqlite3"}))
    doctor_check_database(p, r);
  else if (p.extension() == ".bin" &&
           (starts_with(p, TokenShardHeader::kMagic, 8) || name == "train.bin" ||
            name == "val.bin" || name == "test.bin"))
    doctor_check_shard(p, r);
  else if (p.extension() == ".model")
    doctor_check_tokenizer(p, r);
}

}  // namespace

DoctorReport check_data_dir(const fs::path& dir) {
  DoctorReport r;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    r.add(dir, "not a directory");
    return r;
  }
  if (fs::exists(dir / "meta.json", ec)) {  // given a checkpoint itself
    doctor_check_checkpoint(dir, r);
    return r;
  }
  // Symbolic links are not followed (the iterator's default): a link is checked as a link.
  fs::recursive_directory_iterator it(dir, fs::directory_options::skip_permission_denied, ec);
  for (; !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    const fs::directory_entry& e = *it;
    const fs::path& p = e.path();
    std::error_code st;
    if (e.is_symlink(st)) {
      doctor_check_link(p, r);
    } else if (check_leftover(p, r)) {
      it.disable_recursion_pending();
    } else if (e.is_directory(st)) {
      if (!fs::exists(p / "meta.json", st)) continue;
      doctor_check_checkpoint(p, r);
      it.disable_recursion_pending();  // its files are covered by its manifest
    } else if (e.is_regular_file(st)) {
      check_file(p, r);
    }
  }
  if (ec) r.add(dir, "cannot walk the directory: " + ec.message());
  return r;
}

}  // namespace ktl::cli
