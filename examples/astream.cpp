// astream: the answer streams to a subscriber actor as `chat_chunk`
// messages, then exactly one `stream_done` or `stream_failed`.

#include "example_support.hpp"

#include "maritaca/chat_model.hpp"

#include <caf/event_based_actor.hpp>

#include <future>
#include <iostream>

namespace {

// [subscriber]
// Prints each chunk as it arrives. A handler returning void also answers
// the chunks that come as requests: that answer is the stream's credit.
caf::behavior printer(caf::event_based_actor* self,
                      std::shared_ptr<std::promise<bool>> done) {
  return {
      [](const maritaca::chat_chunk& chunk) {
        std::cout << chunk.content << std::flush;
      },
      [=](const maritaca::stream_done& end) {
        std::cout << "\n[stream_done: " << end.message.content().size()
                  << " bytes]\n";
        done->set_value(true);
        self->quit();
      },
      [=](const maritaca::stream_failed& end) {
        std::cout << "\n[stream_failed: " << maritaca::describe(end.error)
                  << "]\n";
        done->set_value(false);
        self->quit();
      },
  };
}
// [subscriber]

} // namespace

int main(int argc, char** argv) {
  std::unique_ptr<maritaca::sim::server> sim;
  auto cfg = maritaca::examples::example_config(argc, argv, sim);
  maritaca::chat_model model{cfg};
  // [astream]
  auto done = std::make_shared<std::promise<bool>>();
  auto ended = done->get_future();
  auto subscriber = model.system().spawn(printer, done);
  model.astream(subscriber, "Tell a story.");
  // ... the calling thread is free while the chunks arrive ...
  bool ok = ended.get();
  // [astream]
  if (!ok) return 1;
  // The blocking twin: stream() iterates the chunks in a plain loop.
  // [stream]
  auto chunks = model.stream("Conte uma história.");
  for (auto& chunk : chunks)
    std::cout << chunk.content << std::flush;
  std::cout << '\n';
  if (!chunks.result()) {
    std::cerr << maritaca::describe(chunks.result().error()) << '\n';
    return 1;
  }
  // [stream]
  return 0;
}
