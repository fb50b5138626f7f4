// In-memory tests of the request actor's pure parts: the retry policy and
// the aggregation of streamed chunks.

#include "request.hpp"

#include <catch2/catch.hpp>

using namespace maritaca;
using namespace std::chrono_literals;

TEST_CASE("decide_retry follows the policy") {
  retry_policy p;
  failure f;
  f.code = errc::rate_limited;
  f.status = 429;
  f.retry_after_ms = 1500;
  auto d = decide_retry(f, 0, p, false, 0.5);
  CHECK(d.retry);
  CHECK(d.delay == 1500ms);
  f.retry_after_ms = 120'000; // capped
  CHECK(decide_retry(f, 0, p, false, 0.5).delay == p.max_retry_after);
  CHECK_FALSE(decide_retry(f, 2, p, false, 0.5).retry); // out of retries
  CHECK_FALSE(decide_retry(f, 0, p, true, 0.5).retry);  // data delivered
  f.should_retry = 0;
  CHECK_FALSE(decide_retry(f, 0, p, false, 0.5).retry);
  failure bad = make_failure(errc::bad_request, "no");
  CHECK_FALSE(decide_retry(bad, 0, p, false, 0.5).retry);
  bad.should_retry = 1;
  CHECK(decide_retry(bad, 0, p, false, 0.5).retry);
  failure timeout = make_timeout(deadline::first_byte, "slow");
  // Backoff: 500 ms * 2^n capped at 8 s, times [0.75, 1].
  CHECK(decide_retry(timeout, 0, p, false, 0.0).delay == 500ms);
  CHECK(decide_retry(timeout, 1, p, false, 0.0).delay == 1000ms);
  CHECK(decide_retry(timeout, 1, p, false, 1.0).delay == 750ms);
  p.max_retries = 10;
  CHECK(decide_retry(timeout, 6, p, false, 0.0).delay == 8000ms);
  failure lost = make_failure(errc::connection_lost, "reset");
  CHECK(decide_retry(lost, 0, p, false, 0.0).retry);
  lost.response_started = true;
  CHECK_FALSE(decide_retry(lost, 0, p, false, 0.0).retry);
  failure status408 = make_failure(errc::http_status, "timeout");
  status408.status = 408;
  CHECK(decide_retry(status408, 0, p, false, 0.0).retry);
  failure server = make_failure(errc::server_error, "boom");
  p.retry_server_errors = false;
  CHECK_FALSE(decide_retry(server, 0, p, false, 0.0).retry);
}

TEST_CASE("chunk_aggregator joins content and tool calls by index") {
  chunk_aggregator agg;
  CHECK(agg.empty());
  completion_chunk a;
  a.id = "c1";
  a.model = "sabia-4";
  chunk_choice ca;
  ca.role = "assistant";
  ca.content = "Olá, ";
  a.choices.push_back(ca);
  agg.add(a);
  completion_chunk b;
  chunk_choice cb;
  cb.content = "mundo";
  cb.tool_calls.push_back({0, "call_1", "function", "get_weather", "{\"ci"});
  cb.tool_calls.push_back({1, "call_2", "function", "add", "{\"a\":"});
  b.choices.push_back(cb);
  agg.add(b);
  completion_chunk c;
  chunk_choice cc;
  cc.tool_calls.push_back({0, "", "", "", "ty\":\"Recife\"}"});
  cc.tool_calls.push_back({1, "", "", "", "1}"});
  cc.finish_reason = "tool_calls";
  c.choices.push_back(cc);
  agg.add(c);
  completion_chunk u;
  u.usage = usage{10, 5, 15, 0};
  agg.add(u);
  auto m = agg.result();
  CHECK(m.id == "c1");
  CHECK(m.model == "sabia-4");
  CHECK(m.content() == "Olá, mundo");
  REQUIRE(m.tool_calls().size() == 2);
  CHECK(m.tool_calls()[0].id == "call_1");
  CHECK(m.tool_calls()[0].name == "get_weather");
  CHECK(m.tool_calls()[0].arguments == "{\"city\":\"Recife\"}");
  CHECK(m.tool_calls()[1].arguments == "{\"a\":1}");
  CHECK(m.finish_reason == "tool_calls");
  REQUIRE(m.usage);
  CHECK(m.usage->total_tokens == 15);
  // The same chunks as one transport batch (split in two) give the same.
  sse::chunk_batch first;
  first.id = "c1";
  first.model = "sabia-4";
  first.chunks = 2;
  first.pieces.push_back({ca, std::nullopt});
  first.pieces.push_back({cb, std::nullopt});
  sse::chunk_batch second;
  second.chunks = 2;
  second.pieces.push_back({cc, std::nullopt});
  second.pieces.push_back({chunk_choice{}, usage{10, 5, 15, 0}});
  chunk_aggregator by_batch;
  by_batch.add(first);
  by_batch.add(second);
  CHECK_FALSE(by_batch.empty());
  auto n = by_batch.result();
  CHECK(n.id == m.id);
  CHECK(n.model == m.model);
  CHECK(n.message == m.message);
  CHECK(n.finish_reason == m.finish_reason);
  CHECK(n.usage == m.usage);
}
