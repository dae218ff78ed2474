#include "core/data/corpus_reader.h"

#include <gtest/gtest.h>

#include "tests/support/data_test_util.h"

namespace {

using ktl::CorpusReader;
using ktl::RawDocument;
using ktl::testing::TempDir;

std::vector<std::string> read_all(CorpusReader& r, const std::vector<std::string>& inputs) {
  std::vector<std::string> out;
  r.read(inputs, [&](RawDocument&& d) { out.push_back(d.text); });
  return out;
}

const char* kWikiXml =
    R"(<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/" xml:lang="ko">
  <siteinfo><sitename>위키백과</sitename></siteinfo>
  <page>
    <title>서울</title>
    <ns>0</ns>
    <id>1</id>
    <revision>
      <id>10</id>
      <text bytes="100" xml:space="preserve">{{도시 정보|이름=서울}}
'''서울'''은 [[대한민국]]의 수도이다.&lt;ref&gt;출처&lt;/ref&gt;
== 역사 ==
[[조선]]의 도읍이었다.</text>
    </revision>
  </page>
  <page>
    <title>서울시</title>
    <ns>0</ns>
    <id>2</id>
    <redirect title="서울" />
    <revision><text xml:space="preserve">#넘겨주기 [[서울]]</text></revision>
  </page>
  <page>
    <title>틀:도시 정보</title>
    <ns>10</ns>
    <id>3</id>
    <revision><text xml:space="preserve">틀 내용은 버려진다</text></revision>
  </page>
  <page>
    <title>부산</title>
    <ns>0</ns>
    <id>4</id>
    <revision><text xml:space="preserve">'''부산'''은 항구 도시이다.</text></revision>
  </page>
</mediawiki>
)";

TEST(CorpusReader, DetectsFormats) {
  EXPECT_EQ(CorpusReader::detect_format("a/b.txt"), "text");
  EXPECT_EQ(CorpusReader::detect_format("x.jsonl.gz"), "jsonl");
  EXPECT_EQ(CorpusReader::detect_format("NIKL_NEWSPAPER.json"), "json");
  EXPECT_EQ(CorpusReader::detect_format("p.HTML"), "html");
  EXPECT_EQ(CorpusReader::detect_format("kowiki-latest-pages-articles.xml.bz2"), "mediawiki");
  EXPECT_EQ(CorpusReader::detect_format("notes.md"), "");
}

TEST(CorpusReader, TextLineAndParagraphModes) {
  TempDir d;
  ktl::testing::write_text(d.file("lines.txt"), "첫 문서\n둘째 문서\n");
  ktl::testing::write_text(d.file("paras.txt"), "첫 문단\n이어지는 줄\n\n둘째 문서\n");
  CorpusReader r;
  EXPECT_EQ(read_all(r, {d.file("lines.txt")}), (std::vector<std::string>{"첫 문서", "둘째 문서"}));
  EXPECT_EQ(read_all(r, {d.file("paras.txt")}),
            (std::vector<std::string>{"첫 문단\n이어지는 줄", "둘째 문서"}));
  ktl::ReaderConfig cfg;
  cfg.txt_docs = "line";
  CorpusReader r2(cfg);
  EXPECT_EQ(read_all(r2, {d.file("paras.txt")}).size(), 3u);
}

TEST(CorpusReader, JsonlTextFieldAndModuLayout) {
  TempDir d;
  ktl::testing::write_gzip(
      d.file("r.jsonl.gz"),
      "{\"id\":1,\"review\":\"재밌어요\"}\n\n{\"id\":2,\"review\":\"별로\"}\n");
  ktl::ReaderConfig cfg;
  cfg.text_field = "review";
  CorpusReader r(cfg);
  EXPECT_EQ(read_all(r, {d.file("r.jsonl.gz")}), (std::vector<std::string>{"재밌어요", "별로"}));
  ktl::testing::write_text(d.file("modu.json"),
                           R"({"id":"NWRW","metadata":{},"document":[
          {"id":"d1","paragraph":[{"id":"p1","form":"첫 문단."},{"id":"p2","form":"둘째 문단."}]},
          {"id":"d2","paragraph":[{"id":"p1","form":"다른 기사."}]}]})");
  CorpusReader r2;
  EXPECT_EQ(read_all(r2, {d.file("modu.json")}),
            (std::vector<std::string>{"첫 문단.\n둘째 문단.", "다른 기사."}));
}

TEST(CorpusReader, HtmlFilesAndDirectories) {
  TempDir d;
  std::filesystem::create_directories(d.path() / "site" / "sub");
  ktl::testing::write_text(d.file("site/b.html"), "<html><body><p>둘째 쪽</p></body></html>");
  ktl::testing::write_text(d.file("site/sub/a.htm"), "<p>첫째 &amp; 쪽</p>");
  ktl::testing::write_text(d.file("site/style.css"), "p{}");
  CorpusReader r;
  auto docs = read_all(r, {d.file("site")});
  ASSERT_EQ(docs.size(), 2u);  // sorted paths: site/b.html, site/sub/a.htm
  EXPECT_NE(docs[0].find("둘째 쪽"), std::string::npos);
  EXPECT_NE(docs[1].find("첫째 & 쪽"), std::string::npos);
  EXPECT_THROW(read_all(r, {d.file("missing")}), std::runtime_error);
}

TEST(CorpusReader, MediaWikiSkipsRedirectsAndOtherNamespaces) {
  TempDir d;
  ktl::testing::write_text(d.file("wiki.xml"), kWikiXml);
  ktl::testing::write_text(d.file("wiki.xml.bz2"), ktl::testing::bzip2_bytes(kWikiXml));
  for (const char* name : {"wiki.xml", "wiki.xml.bz2"}) {
    CorpusReader r;
    auto docs = read_all(r, {d.file(name)});
    ASSERT_EQ(docs.size(), 2u) << name;
    EXPECT_NE(docs[0].find("서울은 대한민국의 수도이다."), std::string::npos) << docs[0];
    EXPECT_NE(docs[0].find("조선의 도읍이었다."), std::string::npos);
    EXPECT_EQ(docs[0].find("도시 정보"), std::string::npos);  // template gone
    EXPECT_EQ(docs[0].find("출처"), std::string::npos);       // <ref> gone
    EXPECT_NE(docs[1].find("부산은 항구 도시이다."), std::string::npos);
    EXPECT_EQ(r.error_count(), 0u);
  }
}

TEST(CorpusReader, MalformedInputsReportedWithFileAndLineAndSkipped) {
  TempDir d;
  ktl::testing::write_text(
      d.file("bad.jsonl"),
      "{\"text\":\"좋은 줄\"}\n{\"text\": 깨진 줄\n{\"other\":1}\n{\"text\":\"마지막 줄\"}\n");
  ktl::testing::write_text(d.file("bad.txt"), "정상 줄\n\xFF\xFE 잘못된 바이트\n다음 정상 줄\n");
  // A two-stream dump whose second stream (the last two pages) is cut in half.
  const std::string xml = kWikiXml;
  const size_t cut = xml.find("  <page>\n    <title>틀");
  std::string second = ktl::testing::bzip2_bytes(xml.substr(cut));
  ktl::testing::write_text(d.file("cut.xml.bz2"), ktl::testing::bzip2_bytes(xml.substr(0, cut)) +
                                                      second.substr(0, second.size() / 2));
  CorpusReader r;
  std::vector<std::string> seen_errors;
  r.on_error = [&](const ktl::InputError& e) { seen_errors.push_back(e.to_string()); };
  auto docs = read_all(r, {d.file("bad.jsonl"), d.file("bad.txt"), d.file("cut.xml.bz2")});
  ASSERT_EQ(docs.size(), 5u);  // the article before the truncation survives
  EXPECT_EQ(std::vector<std::string>(docs.begin(), docs.begin() + 4),
            (std::vector<std::string>{"좋은 줄", "마지막 줄", "정상 줄", "다음 정상 줄"}));
  EXPECT_NE(docs[4].find("서울은 대한민국의 수도이다."), std::string::npos);
  ASSERT_EQ(r.error_count(), 4u);
  EXPECT_EQ(r.errors()[0].file, d.file("bad.jsonl"));
  EXPECT_EQ(r.errors()[0].line, 2);
  EXPECT_NE(r.errors()[0].message.find("broken JSON"), std::string::npos);
  EXPECT_EQ(r.errors()[1].line, 3);
  EXPECT_EQ(r.errors()[2].file, d.file("bad.txt"));
  EXPECT_EQ(r.errors()[2].line, 2);
  EXPECT_NE(r.errors()[2].message.find("invalid UTF-8"), std::string::npos);
  EXPECT_EQ(r.errors()[3].file, d.file("cut.xml.bz2"));
  EXPECT_GT(r.errors()[3].line, 20);
  EXPECT_NE(r.errors()[3].message.find("truncated"), std::string::npos) << r.errors()[3].message;
  EXPECT_EQ(seen_errors.size(), 4u);
  EXPECT_NE(seen_errors[0].find("bad.jsonl:2: "), std::string::npos) << seen_errors[0];
}

}  // namespace
