// Drives maritaca-gateway with the official `openai` npm package: a client
// nobody here wrote. Run by run_gateway_openai.sh, which starts maritaca-sim
// and the gateway and passes GATEWAY_URL and GATEWAY_TOKEN.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import OpenAI from 'openai';

const baseURL = `${process.env.GATEWAY_URL}/v1`;
const apiKey = process.env.GATEWAY_TOKEN;
assert.ok(process.env.GATEWAY_URL, 'GATEWAY_URL must be set');

const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 30_000 });

const weatherTool = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Get the current weather of a city',
    parameters: {
      type: 'object',
      properties: { city: { type: 'string' } },
      required: ['city'],
    },
  },
};

test('plain completion', async () => {
  const res = await client.chat.completions.create({
    model: 'sabia-4',
    messages: [{ role: 'user', content: 'What is the capital of Brazil?' }],
  });
  assert.equal(res.object, 'chat.completion');
  assert.equal(res.choices.length, 1);
  assert.equal(res.choices[0].message.role, 'assistant');
  assert.equal(res.choices[0].message.content,
               'The capital of Brazil is Brasília.');
  assert.equal(res.choices[0].finish_reason, 'stop');
  assert.ok(res.usage.total_tokens > 0);
});

test('streamed completion with usage', async () => {
  const stream = await client.chat.completions.create({
    model: 'sabia-4',
    messages: [{ role: 'user', content: 'What is 2+2?' }],
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = '';
  let chunks = 0;
  let usage = null;
  let finish = null;
  for await (const chunk of stream) {
    chunks += 1;
    assert.equal(chunk.object, 'chat.completion.chunk');
    if (chunk.usage) usage = chunk.usage;
    for (const choice of chunk.choices) {
      text += choice.delta?.content ?? '';
      if (choice.finish_reason) finish = choice.finish_reason;
    }
  }
  assert.equal(text, '2 + 2 = 4.');
  assert.ok(chunks >= 5, `only ${chunks} chunks`);
  assert.equal(finish, 'stop');
  assert.ok(usage && usage.completion_tokens > 0);
});

test('tool call round trip', async () => {
  const messages = [{ role: 'user', content: 'What is the weather in Paris?' }];
  const first = await client.chat.completions.create({
    model: 'sabia-4', messages, tools: [weatherTool],
  });
  const choice = first.choices[0];
  assert.equal(choice.finish_reason, 'tool_calls');
  assert.equal(choice.message.tool_calls.length, 1);
  const call = choice.message.tool_calls[0];
  assert.equal(call.type, 'function');
  assert.equal(call.function.name, 'get_weather');
  const args = JSON.parse(call.function.arguments);
  assert.equal(typeof args.city, 'string');
  // Answer the call; the model uses the result.
  messages.push(choice.message);
  messages.push({ role: 'tool', tool_call_id: call.id, content: '22 °C, sunny' });
  const second = await client.chat.completions.create({
    model: 'sabia-4', messages, tools: [weatherTool],
  });
  assert.equal(second.choices[0].message.content,
               'The result is: 22 °C, sunny');
});

test('streamed tool call', async () => {
  const stream = await client.chat.completions.create({
    model: 'sabia-4',
    messages: [{ role: 'user', content: 'What is the weather in Paris?' }],
    tools: [weatherTool],
    stream: true,
  });
  const calls = [];
  let finish = null;
  for await (const chunk of stream) {
    for (const choice of chunk.choices) {
      for (const d of choice.delta?.tool_calls ?? []) {
        calls[d.index] ??= { id: '', name: '', arguments: '' };
        if (d.id) calls[d.index].id = d.id;
        calls[d.index].name += d.function?.name ?? '';
        calls[d.index].arguments += d.function?.arguments ?? '';
      }
      if (choice.finish_reason) finish = choice.finish_reason;
    }
  }
  assert.equal(finish, 'tool_calls');
  assert.equal(calls.length, 1);
  assert.equal(calls[0].name, 'get_weather');
  assert.ok(calls[0].id.length > 0);
  assert.equal(typeof JSON.parse(calls[0].arguments).city, 'string');
});

test('response_format json_object', async () => {
  const res = await client.chat.completions.create({
    model: 'sabia-4',
    messages: [{ role: 'user', content: 'What is the capital of Brazil?' }],
    response_format: { type: 'json_object' },
  });
  const parsed = JSON.parse(res.choices[0].message.content);
  assert.equal(parsed.answer, 'The capital of Brazil is Brasília.');
});

test('models retrieve', async () => {
  const m = await client.models.retrieve('sabia-4');
  assert.equal(m.id, 'sabia-4');
  assert.equal(m.object, 'model');
  await assert.rejects(client.models.retrieve('no-such-model'),
    (err) => err instanceof OpenAI.NotFoundError && err.status === 404);
});

test('models list', async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  assert.ok(ids.includes('sabia-4'), `models: ${ids}`);
});

test('an upstream 429 surfaces as RateLimitError', async () => {
  const limited = new OpenAI({
    baseURL, apiKey, maxRetries: 0,
    defaultHeaders: { 'x-sim-fault': '429;retry-after=1' },
  });
  await assert.rejects(
    limited.chat.completions.create({
      model: 'sabia-4', messages: [{ role: 'user', content: 'hi' }],
    }),
    (err) => {
      assert.ok(err instanceof OpenAI.RateLimitError, `got ${err}`);
      assert.equal(err.status, 429);
      assert.equal(err.headers.get('retry-after'), '1');
      assert.equal(err.type, 'rate_limit_error');
      return true;
    });
  // The same for a stream, before any chunk.
  await assert.rejects(
    limited.chat.completions.create({
      model: 'sabia-4', messages: [{ role: 'user', content: 'hi' }],
      stream: true,
    }),
    (err) => err instanceof OpenAI.RateLimitError);
});

test('an error in the middle of a stream throws APIError', async () => {
  const broken = new OpenAI({
    baseURL, apiKey, maxRetries: 0,
    defaultHeaders: { 'x-sim-fault': 'error-mid' },
  });
  const stream = await broken.chat.completions.create({
    model: 'sabia-4', messages: [{ role: 'user', content: 'Tell a story' }],
    stream: true,
  });
  let text = '';
  await assert.rejects(async () => {
    for await (const chunk of stream)
      text += chunk.choices[0]?.delta?.content ?? '';
  }, (err) => err instanceof OpenAI.APIError);
  assert.ok(text.length > 0, 'some content came before the error');
});

test('a wrong token surfaces as AuthenticationError', async () => {
  const stranger = new OpenAI({ baseURL, apiKey: 'not-a-token', maxRetries: 0 });
  await assert.rejects(
    stranger.chat.completions.create({
      model: 'sabia-4', messages: [{ role: 'user', content: 'hi' }],
    }),
    (err) => err instanceof OpenAI.AuthenticationError && err.status === 401);
});

test('a malformed request surfaces as BadRequestError', async () => {
  await assert.rejects(
    client.chat.completions.create({ model: 'sabia-4', messages: 'nope' }),
    (err) => err instanceof OpenAI.BadRequestError && err.status === 400);
});
