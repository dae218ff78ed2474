#include "core/data/html_text.h"

#include <gtest/gtest.h>

namespace {

TEST(HtmlText, DecodesEntities) {
  EXPECT_EQ(
      ktl::decode_html_entities("A&amp;B &lt;x&gt; &#44032;&#xAC01; &nbsp;&quot;&unknown; & 끝"),
      "A&B <x> 가각 \xC2\xA0\"&unknown; & 끝");
}

TEST(HtmlText, PageToTextDropsChromeAndScripts) {
  const std::string html =
      "<!DOCTYPE html><html><head><title>제목</title><script>var x = '<p>no</p>';</script></head>"
      "<body><header><nav>메뉴 항목</nav></header><!-- 주석 -->"
      "<h1>대화 상자 만들기</h1><p>도구를 <span class=\"emph\">선택</span>합니다.</p>"
      "<ul><li>첫째</li><li>둘째</li></ul><style>p { color: red }</style>"
      "<aside>색인</aside><footer>저작권</footer></body></html>";
  const std::string text = ktl::html_to_text(html);
  EXPECT_NE(text.find("대화 상자 만들기"), std::string::npos);
  EXPECT_NE(text.find("도구를 선택합니다."), std::string::npos);
  EXPECT_NE(text.find("첫째\n"), std::string::npos);
  for (const char* gone : {"메뉴", "주석", "color", "var x", "색인", "저작권", "제목", "<"})
    EXPECT_EQ(text.find(gone), std::string::npos) << gone;
}

TEST(HtmlText, StripTagsKeepsKoreanAngleBrackets) {
  EXPECT_EQ(ktl::strip_html_tags("<책> 을 읽고 <b>좋았다</b><br/>다음 줄"),
            "<책> 을 읽고 좋았다\n다음 줄");
  EXPECT_EQ(ktl::strip_html_tags("3 < 5 그리고 a<b"), "3 < 5 그리고 a<b");
}

}  // namespace
