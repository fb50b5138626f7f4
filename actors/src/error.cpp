#include "maritaca/error.hpp"

#include "maritaca/messages.hpp"

#include <caf/actor_system_config.hpp>
#include <caf/message.hpp>
#include <caf/sec.hpp>

namespace maritaca {

caf::error make_error(failure x) {
  auto code = static_cast<uint8_t>(x.code);
  return caf::error{code, error_category, caf::make_message(std::move(x))};
}

caf::error make_error(errc code, std::string message) {
  return make_error(make_failure(code, std::move(message)));
}

bool is_maritaca_error(const caf::error& x) noexcept {
  return x && x.category() == error_category;
}

errc code_of(const caf::error& x) noexcept {
  if (!x) return errc::none;
  if (x.category() == error_category) return static_cast<errc>(x.code());
  if (x.category() == caf::atom("system")) {
    switch (static_cast<caf::sec>(x.code())) {
    case caf::sec::request_timeout:
      return errc::timeout;
    case caf::sec::request_receiver_down:
      return errc::cancelled;
    case caf::sec::unexpected_message:
    case caf::sec::unexpected_response:
      return errc::protocol_error;
    default:
      break;
    }
  }
  if (x.category() == caf::atom("exit")) return errc::cancelled;
  return errc::protocol_error;
}

failure to_failure(const caf::error& x) {
  if (is_maritaca_error(x)) {
    auto& ctx = x.context();
    if (ctx.match_elements<failure>()) return ctx.get_as<failure>(0);
    failure result;
    result.code = static_cast<errc>(x.code());
    return result;
  }
  failure result;
  result.code = code_of(x);
  if (x) result.message = caf::to_string(x);
  if (result.code == errc::timeout) result.which = deadline::total;
  return result;
}

std::string describe(const caf::error& x) {
  return to_failure(x).describe();
}

void add_error_category(caf::actor_system_config& cfg) {
  cfg.add_error_category(error_category,
                         [](uint8_t code, caf::atom_value,
                            const caf::message& ctx) -> std::string {
                           if (ctx.match_elements<failure>())
                             return ctx.get_as<failure>(0).describe();
                           return std::string{
                               to_string(static_cast<errc>(code))};
                         });
}

} // namespace maritaca
