/// @file
/// What `maritaca` prints: answers, chunks and errors as the service's JSON,
/// and error lines.

#include "cli.hpp"

#include "maritaca/transport/wire.hpp"

#include <ctime>
#include <iostream>

namespace maritaca::cli {

std::string to_json(const ai_message& msg) {
  chat_completion c;
  c.id = msg.id;
  c.model = msg.model;
  c.usage = msg.usage;
  completion_choice choice;
  choice.message = msg.message;
  choice.finish_reason = msg.finish_reason;
  c.choices.push_back(std::move(choice));
  return wire::encode_completion(c);
}

std::string to_json(const chat_chunk& chunk, const std::string& model) {
  completion_chunk c;
  c.id = "chatcmpl-" + std::to_string(chunk.request_id);
  c.created = static_cast<int64_t>(std::time(nullptr));
  c.model = model;
  if (chunk.usage) {
    c.usage = chunk.usage;
  } else {
    chunk_choice choice;
    choice.index = chunk.index;
    choice.content = chunk.content;
    choice.tool_calls = chunk.tool_calls;
    choice.finish_reason = chunk.finish_reason;
    c.choices.push_back(std::move(choice));
  }
  return wire::encode_chunk(c);
}

std::string to_json(const caf::error& err) {
  auto f = to_failure(err);
  api_error e;
  e.message = f.describe();
  e.type = std::string{to_string(f.code)};
  if (f.status != 0) e.code = std::to_string(f.status);
  return wire::encode_error(e);
}

int report(const caf::error& err) {
  std::cerr << "maritaca: error: " << describe(err) << std::endl;
  return 1;
}

} // namespace maritaca::cli
