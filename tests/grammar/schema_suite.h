// The JSON-schema suite of the grammar tests (and bench/grammar_bench.cpp): every supported
// keyword, alone and nested, with Hangul keys and values.
#pragma once

namespace ktl::grammar::testing {

inline const char* const kSchemas[] = {
    R"({"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"}},"required":["name","age"],"additionalProperties":false})",
    R"({"type":"object","properties":{"이름":{"type":"string"},"나이":{"type":"integer","minimum":0,"maximum":150}},"required":["이름"],"additionalProperties":false})",
    R"({"type":"object","properties":{"a":{"type":"object","properties":{"b":{"type":"array","items":{"type":"number"}}},"required":["b"],"additionalProperties":false}},"required":["a"],"additionalProperties":false})",
    R"({"type":"array","items":{"type":"string","enum":["빨강","파랑","red","green"]},"minItems":1,"maxItems":4})",
    R"({"enum":["a",1,null,true,{"k":[1,2]},"안녕하세요"]})",
    R"({"const":{"status":"ok","코드":200}})",
    R"({"anyOf":[{"type":"integer","minimum":10,"maximum":20},{"type":"string","maxLength":3},{"type":"null"}]})",
    R"({"oneOf":[{"type":"boolean"},{"type":"array","items":{"type":"integer"},"maxItems":2}]})",
    R"({"type":"integer","minimum":-1000,"maximum":-17})",
    R"({"type":"integer","minimum":-35,"maximum":1234})",
    R"({"type":"integer","exclusiveMinimum":7,"exclusiveMaximum":100})",
    R"({"type":"integer","minimum":1005})",
    R"({"type":"integer","maximum":-3})",
    R"({"type":"integer","minimum":-42})",
    R"({"type":"integer","maximum":99})",
    R"({"type":"number"})",
    R"({"type":"number","minimum":-5,"maximum":5})",
    R"({"type":"number","exclusiveMinimum":0,"exclusiveMaximum":1})",
    R"({"type":"string","minLength":2,"maxLength":6})",
    R"({"type":"string","pattern":"^[a-z]{2,4}-[0-9]+(\\.[0-9]{2})?$"})",
    R"({"type":"string","pattern":"^(abc|가나다|x\\d{3})$"})",
    R"({"type":"string","format":"date"})",
    R"({"type":"string","format":"date-time"})",
    R"({"type":"string","format":"time"})",
    R"({"type":"object","properties":{"id":{"type":"string","format":"uuid"},"mail":{"type":"string","format":"email"}},"required":["id","mail"],"additionalProperties":false})",
    R"({"$defs":{"node":{"type":"object","properties":{"v":{"type":"integer"},"kids":{"type":"array","items":{"$ref":"#/$defs/node"},"maxItems":2}},"required":["v"],"additionalProperties":false}},"$ref":"#/$defs/node"})",
    R"({"definitions":{"list":{"anyOf":[{"type":"null"},{"type":"object","properties":{"head":{"type":"string","maxLength":2},"tail":{"$ref":"#/definitions/list"}},"required":["head","tail"],"additionalProperties":false}]}},"$ref":"#/definitions/list"})",
    R"({"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"string"}},"required":["a"],"additionalProperties":true})",
    R"({"type":"object","properties":{"x":{"type":"boolean"}},"additionalProperties":{"type":"integer","minimum":0,"maximum":9}})",
    R"({"type":"object"})",
    R"({"type":["string","integer","null"]})",
    R"({"allOf":[{"type":"object","properties":{"q":{"type":"string"}},"required":["q"],"additionalProperties":false},{"description":"only a note"}]})",
    R"({"type":"object","properties":{"o1":{"type":"integer"},"r1":{"type":"boolean"},"o2":{"type":"null"},"r2":{"enum":["가","나"]},"o3":{"type":"string","maxLength":1}},"required":["r1","r2"],"additionalProperties":false})",
    R"({"title":"t","description":"d","$schema":"http://json-schema.org/draft-07/schema#","$id":"x","default":{},"examples":[],"type":"array","items":{"type":"object","properties":{"k":{"const":"v"}},"required":["k"],"additionalProperties":false},"maxItems":3})",
    R"(true)",
};

}  // namespace ktl::grammar::testing
