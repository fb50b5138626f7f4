// ainvoke: ask without blocking; the future becomes ready with the answer.

#include "example_support.hpp"

#include "maritaca/chat_model.hpp"

#include <iostream>

int main(int argc, char** argv) {
  std::unique_ptr<maritaca::sim::server> sim;
  auto cfg = maritaca::examples::example_config(argc, argv, sim);
  // [ainvoke]
  maritaca::chat_model model{cfg};
  std::future<maritaca::chat_model::result_type> pending =
      model.ainvoke("Hello!");
  // ... free to do other work here ...
  auto response = pending.get();
  if (!response) {
    std::cerr << maritaca::describe(response.error()) << '\n';
    return 1;
  }
  std::cout << response->content() << '\n';
  // [ainvoke]
  // The blocking twin, for comparison: invoke() waits in place.
  auto capital = model.invoke("Qual é a capital do Brasil?");
  if (!capital) {
    std::cerr << maritaca::describe(capital.error()) << '\n';
    return 1;
  }
  std::cout << capital->content() << '\n';
  return 0;
}
