// abatch: many asks at once; the answers come back in input order, each
// either a message or its own error.

#include "example_support.hpp"

#include "maritaca/chat_model.hpp"

#include <iostream>

int main(int argc, char** argv) {
  std::unique_ptr<maritaca::sim::server> sim;
  auto cfg = maritaca::examples::example_config(argc, argv, sim);
  // [abatch]
  maritaca::chat_model model{cfg};

  std::vector<maritaca::input> questions{
      {{"human", "What is 2+2?"}},
      {{"human", "What is the capital of Brazil?"}},
  };

  auto responses = model.abatch(questions).get();
  for (auto& r : responses)
    std::cout << (r ? r->content() : maritaca::describe(r.error())) << '\n';
  // [abatch]
  for (auto& r : responses)
    if (!r) return 1;
  return 0;
}
