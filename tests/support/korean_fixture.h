// Generates varied Korean sentences for tests (deterministic for a seed). Header-only.
#pragma once

#include <fstream>
#include <random>
#include <string>
#include <vector>

namespace ktl::testing {

inline std::vector<std::string> korean_sentences(size_t n, unsigned seed = 7) {
  static const std::vector<std::string> subj = {
      "나는",       "우리는",    "친구가",          "선생님께서",  "학생들이",
      "어머니는",   "그 남자는", "고양이가",        "작은 아이가", "회사 사람들이",
      "할머니께서", "동생이",    "이웃집 강아지가", "기자들이"};
  static const std::vector<std::string> place = {
      "학교에서", "서울에서",        "도서관에서", "집 앞에서",  "바닷가에서", "시장에서",
      "공원에서", "부산역 근처에서", "카페에서",   "회의실에서", "산 위에서",  "지하철 안에서"};
  static const std::vector<std::string> obj = {
      "책을",   "밥을",       "커피를",      "영화를",   "편지를", "노래를", "사진을",
      "숙제를", "김치찌개를", "새 컴퓨터를", "한국어를", "축구를", "그림을", "뉴스를"};
  static const std::vector<std::string> verb = {
      "읽었다.",     "먹었어요.",   "마셨습니다.", "보았다.",     "썼어요.",
      "불렀습니다.", "찍었다.",     "했어요.",     "끓였습니다.", "샀다.",
      "배웠어요.",   "좋아합니까?", "그렸습니다!", "들었다."};
  static const std::vector<std::string> extra = {"",
                                                 "",
                                                 "",
                                                 " 정말 재미있었다.",
                                                 " 날씨가 좋았다.",
                                                 " 그래서 기분이 좋아요.",
                                                 " 내일도 할 거예요.",
                                                 " 2024년 3월 15일이었다.",
                                                 " 시간은 오후 7시 30분이었다.",
                                                 " 다들 웃었다 ㅋㅋ",
                                                 " 너무 슬펐어요 ㅠㅠ",
                                                 " 가격은 12,500원이었다."};
  std::mt19937 rng(seed);
  auto pick = [&](const std::vector<std::string>& v) { return v[rng() % v.size()]; };
  std::vector<std::string> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i)
    out.push_back(pick(subj) + " " + pick(place) + " " + pick(obj) + " " + pick(verb) +
                  pick(extra));
  return out;
}

inline void write_lines(const std::string& path, const std::vector<std::string>& lines) {
  std::ofstream f(path, std::ios::binary);
  for (const auto& l : lines) f << l << "\n";
}

}  // namespace ktl::testing
