// Uses the installed headers and libraries: builds a request, encodes it,
// and runs a chat model against the base URL given as argv[1].
#include <maritaca/chat_model.hpp>
#include <maritaca/transport/wire.hpp>

#include <iostream>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: consumer BASE_URL\n";
    return 2;
  }
  maritaca::model_config cfg;
  cfg.base_url = argv[1];
  maritaca::chat_model model{cfg};
  auto answer = model.invoke("What is 2+2?");
  if (!answer) {
    std::cerr << maritaca::describe(answer.error()) << '\n';
    return 1;
  }
  std::cout << answer->content() << '\n';
  return 0;
}
