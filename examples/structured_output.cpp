// Structured output: JSON mode, answers following a JSON Schema, reading
// the document, and what happens when an answer does not fit.

#include "example_support.hpp"

#include "maritaca/chat_model.hpp"
#include "maritaca/structured.hpp"

#include <iostream>
#include <string>

int main(int argc, char** argv) {
  std::unique_ptr<maritaca::sim::server> sim;
  auto cfg = maritaca::examples::example_config(argc, argv, sim);
  maritaca::chat_model model{cfg};

  // [json-mode]
  // JSON mode: the answer is a JSON object (response_format json_object).
  auto json = maritaca::with_structured_output(model);
  auto doc = json.invoke("What is 2+2? Answer in JSON.");
  if (!doc) {
    std::cout << "failed: " << maritaca::describe(doc.error()) << '\n';
    return 1;
  }
  std::cout << "json: " << doc->text() << '\n';
  // [json-mode]

  // [schema]
  // With a schema (response_format json_schema), the answer is checked
  // against its required keys and types before you see it.
  constexpr const char* schema = R"({
    "title": "capital",
    "type": "object",
    "properties": {
      "answer": {"type": "string"},
      "country": {"type": "string"},
      "population_millions": {"type": "integer"},
      "kind": {"enum": ["capital", "city"]}
    },
    "required": ["answer", "country", "population_millions", "kind"]
  })";
  auto structured = maritaca::with_structured_output(model, schema);
  auto capital = structured.invoke(
      "What is the capital of France? It has 2 million people.");
  if (!capital) {
    std::cout << "failed: " << maritaca::describe(capital.error()) << '\n';
    return 1;
  }
  // Values are read by JSON Pointer; no JSON library in sight.
  std::cout << "answer: " << capital->get_string("/answer").value_or("") << '\n'
            << "population: "
            << capital->get_integer("/population_millions").value_or(0)
            << " million\n"
            << "kind: " << capital->get_string("/kind").value_or("") << '\n';
  // [schema]

  // [misfit]
  // JSON that does not fit is a protocol_error naming the path.
  auto misfit = maritaca::parse_structured(
      R"({"answer": "Paris", "country": "France",
          "population_millions": "two", "kind": "capital"})",
      schema);
  if (!misfit)
    std::cout << "misfit: " << maritaca::describe(misfit.error()) << '\n';
  // [misfit]
  return 0;
}
