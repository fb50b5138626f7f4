// Concurrency limit: the C++ analog of asyncio.Semaphore(5). The model's
// dispatcher admits at most limits.max_concurrency requests at once and
// queues the rest, so callers simply send everything.

#include "example_support.hpp"

#include "maritaca/chat_model.hpp"

#include <caf/scoped_actor.hpp>

#include <iostream>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  std::unique_ptr<maritaca::sim::server> sim;
  auto cfg = maritaca::examples::example_config(argc, argv, sim);
  // [limit]
  cfg.limits.max_concurrency = 5; // max 5 concurrent
  maritaca::chat_model model{cfg};

  std::vector<std::future<maritaca::chat_model::result_type>> pending;
  for (int i = 0; i < 20; ++i)
    pending.push_back(model.ainvoke("Question " + std::to_string(i)));
  auto results = maritaca::gather(std::move(pending));
  // [limit]

  std::size_t answered = 0;
  for (auto& r : results)
    if (r)
      ++answered;
    else
      std::cout << "failed: " << maritaca::describe(r.error()) << '\n';
  std::cout << "answered " << answered << " of " << results.size() << '\n';

  // [stats]
  caf::scoped_actor self{model.system()};
  self->request(model.dispatcher(), std::chrono::seconds{10},
                maritaca::stats_atom::value)
      .receive(
          [&](const maritaca::dispatcher_stats& st) {
            std::cout << "peak in flight: " << st.max_in_flight << " (limit "
                      << model.config().limits.max_concurrency << ")\n";
          },
          [](const caf::error& err) {
            std::cout << "failed: " << maritaca::describe(err) << '\n';
          });
  // [stats]
  return answered == results.size() ? 0 : 1;
}
