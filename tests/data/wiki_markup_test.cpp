#include "core/data/wiki_markup.h"

#include <gtest/gtest.h>

namespace {

TEST(WikiMarkup, StripsTemplatesLinksRefsAndTables) {
  const std::string wt =
      "{{위키데이터 속성 추적|{{중첩}}}}\n"
      "'''서울특별시'''(서울特別市)는 [[대한민국]]의 [[수도 (도시)|수도]]이다.<ref>{{웹 "
      "인용|url=x}}</ref>\n"
      "[[파일:Seoul.jpg|섬네일|[[서울]]의 모습]]\n"
      "== 역사 ==\n"
      "* 조선의 [[한양]]<ref name=\"a\"/>이었다.<!-- 주석 -->\n"
      "{| class=\"wikitable\"\n| 표 내용\n|}\n"
      "[https://example.com 외부 링크] 참조. __TOC__\n"
      "[[분류:대한민국의 도시]]\n[[en:Seoul]]";
  const std::string t = ktl::strip_wiki_markup(wt);
  EXPECT_NE(t.find("서울특별시(서울特別市)는 대한민국의 수도이다."), std::string::npos) << t;
  EXPECT_NE(t.find("\n역사\n"), std::string::npos) << t;
  EXPECT_NE(t.find("조선의 한양이었다."), std::string::npos) << t;
  EXPECT_NE(t.find("외부 링크 참조."), std::string::npos) << t;
  for (const char* gone : {"{{", "}}", "[[", "웹 인용", "섬네일", "표 내용", "분류", "Seoul",
                           "주석", "'''", "__TOC__", "<ref"})
    EXPECT_EQ(t.find(gone), std::string::npos) << gone << " in:\n" << t;
}

}  // namespace
