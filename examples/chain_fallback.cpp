// Chains: prompt template -> model -> output parser, composed with `|`;
// retries and a fallback model; parallel branches; streaming through.

#include "example_support.hpp"

#include "maritaca/chain.hpp"

#include <iostream>
#include <string>

int main(int argc, char** argv) {
  std::unique_ptr<maritaca::sim::server> sim;
  auto cfg = maritaca::examples::example_config(argc, argv, sim);
  maritaca::chat_model model{cfg};

  // [prompt-chain]
  // `{variables}` fill the template; `{{` and `}}` are literal braces.
  maritaca::prompt_template prompt{
      {"system", "You are a geography teacher. Be brief."},
      {"human", "What is the capital of {country}?"}};
  auto capital = prompt | model | maritaca::output_parser::text();
  auto r = capital.invoke({{"country", "Brazil"}});
  if (!r) {
    std::cout << "failed: " << maritaca::describe(r.error()) << '\n';
    return 1;
  }
  std::cout << "chain: " << r->text << '\n';
  // [prompt-chain]

  // [fallback]
  // The primary model is rate limited (the simulator answers 429 when
  // asked to). The chain tries it once more, then falls back: on 429, 5xx
  // or a timeout only -- a bad request would fail at once.
  auto primary_cfg = cfg;
  primary_cfg.retry.max_retries = 0;
  if (sim) primary_cfg.extra_headers.push_back({"x-sim-fault", "429"});
  maritaca::chat_model primary{primary_cfg};
  auto backup = model.with_config(cfg.with_model("sabiazinho-4"));
  auto robust = (prompt | primary)
                    .with_retry(1, std::chrono::milliseconds{50})
                    .with_fallbacks({backup});
  auto answer = robust.invoke({{"country", "Japan"}});
  if (!answer) {
    std::cout << "failed: " << maritaca::describe(answer.error()) << '\n';
    return 1;
  }
  std::cout << "fallback: " << answer->text << " (model "
            << answer->message.model << ", " << answer->attempts
            << " attempts)\n";
  // [fallback]

  // [parallel]
  // Branches run on the same variables at once; results come by name.
  auto both = maritaca::parallel({
      {"capital", capital},
      {"json", prompt | model | maritaca::output_parser::json()},
  });
  auto results = both.invoke({{"country", "France"}});
  for (auto& [name, result] : results)
    std::cout << name << ": "
              << (result ? result->text : maritaca::describe(result.error()))
              << '\n';
  // [parallel]

  // [stream-chain]
  // The model's chunks stream through; result() has the parsed output.
  auto story = maritaca::prompt_template{"Tell a {kind}."} | model;
  auto chunks = story.stream({{"kind", "story"}});
  std::size_t count = 0;
  for (auto& chunk : chunks) {
    std::cout << chunk.content << std::flush;
    ++count;
  }
  std::cout << '\n';
  if (!chunks.result()) {
    std::cout << "failed: " << maritaca::describe(chunks.result().error())
              << '\n';
    return 1;
  }
  std::cout << "[" << count << " chunks]\n";
  // [stream-chain]
  return 0;
}
