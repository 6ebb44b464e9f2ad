"""Real coding agents through aigw, as their users run them: the pinned clients of tests/e2e/agents (npm),
telemetry and update checks off, against the built binary in front of a scripted upstream on loopback.

Claude Code headless (`claude -p`, default settings: adaptive thinking, its betas, context management) runs a
tool round trip: the upstream thinks (signed), asks for a Bash command in streamed pieces, gets the result back
with its thinking block byte-exact, and answers. The Claude Agent SDK (PyPI, with its bundled CLI) does the same
with a tool of its own, an in-process MCP server's. The OpenAI Agents SDK runs a function tool through the
Responses door."""

import http.server
import json
import os
import signal
import subprocess
import threading

import pytest

from conftest import ROOT, anthropic_event, serve_upstream, spawn_gateway, sse_chunk, start_event_stream

KEY = "sk-agents-e2e"
AGENTS = ROOT / "tests" / "e2e" / "agents" / "node_modules" / ".bin"
SIGNATURE = "EqQBCkYIBxgCKkBagentsig+/=="
THOUGHT = "The user wants a check; run echo first."
COMMAND = {"command": "echo aigw-agent-ok", "description": "Print a marker"}
SDK_TOOL = "mcp__gw__marker"  # the Agent SDK names an in-process tool mcp__<server>__<tool>
SDK_INPUT = {"word": "aigw-sdk-ok"}


def text_of(content):
    """A tool result's text: a string, or its text blocks."""
    return content if isinstance(content, str) else " ".join(c["text"] for c in content if c["type"] == "text")


class Claude(http.server.BaseHTTPRequestHandler):
    """Anthropic's Messages API, scripted: a tool call (with signed thinking) until the tool's result comes back,
    then the answer. Every request is kept: (path, headers, body)."""
    protocol_version = "HTTP/1.1"
    seen = []
    lock = threading.Lock()

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        with self.lock:
            self.seen.append((self.path, dict(self.headers), body))
        start_event_stream(self)

        def ev(e):
            anthropic_event(self.wfile, e)

        last = body["messages"][-1]["content"]
        results = [b for b in last if b.get("type") == "tool_result"] if isinstance(last, list) else []
        answered = [r for r in results if r["tool_use_id"] == "toolu_e2e1"]
        # An agent's own tool (the Agent SDK's in-process MCP server) is deferred: the model finds it with
        # ToolSearch first (the tool comes back as a tool_reference block), then calls it.
        names = [t["name"] for t in body.get("tools", [])]
        if SDK_TOOL in names:
            call = ("toolu_e2e1", SDK_TOOL, SDK_INPUT)
        elif SDK_TOOL in json.dumps(body):
            call = ("toolu_search", "ToolSearch", {"query": f"select:{SDK_TOOL}", "max_results": 1})
        else:
            call = ("toolu_e2e1", "Bash", COMMAND)
        ev({"type": "message_start", "message": {"id": "msg_up", "type": "message", "role": "assistant",
            "model": body["model"], "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 40, "output_tokens": 1}}})
        if answered:
            said = "The command printed aigw-agent-ok."
            if call[1] == SDK_TOOL:
                said = "The tool said: " + text_of(answered[0]["content"])
            ev({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
            ev({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": said}})
            ev({"type": "content_block_stop", "index": 0})
            stop = "end_turn"
        else:
            ev({"type": "content_block_start", "index": 0,
                "content_block": {"type": "thinking", "thinking": "", "signature": ""}})
            ev({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": THOUGHT}})
            ev({"type": "content_block_delta", "index": 0,
                "delta": {"type": "signature_delta", "signature": SIGNATURE}})
            ev({"type": "content_block_stop", "index": 0})
            ev({"type": "content_block_start", "index": 1,
                "content_block": {"type": "tool_use", "id": call[0], "name": call[1], "input": {}}})
            args = json.dumps(call[2])
            for i in range(0, len(args), 8):
                ev({"type": "content_block_delta", "index": 1,
                    "delta": {"type": "input_json_delta", "partial_json": args[i:i + 8]}})
            ev({"type": "content_block_stop", "index": 1})
            stop = "tool_use"
        ev({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
            "usage": {"output_tokens": 30}})
        ev({"type": "message_stop"})
        self.wfile.write(b"0\r\n\r\n")

    def log_message(self, *args):
        pass


def start_gateway(folder, upstream, kind, pattern, max_output):
    """The built gateway in front of one scripted upstream: one key, one model-name pattern whose names pass on
    as the agent sends them (an agent's update needs no config change)."""
    config = folder / "config.toml"
    config.write_text(f"""
[server]
listen = "127.0.0.1:0"
[[keys]]
name = "agents"
env = "AGENTS_KEY"
[[upstreams]]
name = "scripted"
kind = "{kind}"
base_url = "http://127.0.0.1:{upstream.server_address[1]}/v1"
[[models]]
name = "{pattern}"
max_output_tokens = {max_output}
routes = [{{ upstream = "scripted", model = "*" }}]
""")
    return spawn_gateway(config, {"AGENTS_KEY": KEY})


def stop_gateway(proc, lines, upstream):
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0, "".join(lines)
    upstream.shutdown()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    upstream = serve_upstream(Claude)
    proc, addr, lines = start_gateway(tmp_path_factory.mktemp("agents"), upstream, "anthropic", "claude-*", 200000)
    yield addr["grpc"]
    stop_gateway(proc, lines, upstream)


def quiet_env(tmp_path, **extra):
    """The agent's environment: its own home, no telemetry, no update checks, nothing but loopback."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {"PATH": os.environ["PATH"], "HOME": str(home), "DISABLE_TELEMETRY": "1", "DISABLE_AUTOUPDATER": "1",
            "DISABLE_ERROR_REPORTING": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "NO_PROXY": "*",
            **extra}


def test_claude_code_runs_a_tool_round_trip_with_thinking(gateway, tmp_path):
    Claude.seen.clear()
    done = subprocess.run(
        [str(AGENTS / "claude"), "-p", "run the marker command", "--output-format", "json", "--allowedTools", "Bash"],
        env=quiet_env(tmp_path, ANTHROPIC_BASE_URL=f"http://{gateway}", ANTHROPIC_API_KEY=KEY),
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert not result["is_error"], result
    assert result["result"] == "The command printed aigw-agent-ok."
    calls = [(path, headers, body) for path, headers, body in Claude.seen if path == "/v1/messages"]
    assert len(calls) >= 2, [p for p, _, _ in Claude.seen]
    _, headers, first = calls[0]
    # Claude Code's own fields and headers reached the upstream as it sent them.
    assert first["thinking"]["type"] in ("adaptive", "enabled")
    assert "context_management" in first and "output_config" in first
    assert "claude-code" in headers.get("anthropic-beta", headers.get("Anthropic-Beta", ""))
    # Turn 2: the thinking block byte-exact, then the call, and the command's output in the tool result.
    _, _, second = calls[-1]
    said = next(m for m in second["messages"] if m["role"] == "assistant")
    assert said["content"][0] == {"type": "thinking", "thinking": THOUGHT, "signature": SIGNATURE}
    assert said["content"][-1]["type"] == "tool_use" and said["content"][-1]["input"] == COMMAND
    results = [b for m in second["messages"] if m["role"] == "user" and isinstance(m["content"], list)
               for b in m["content"] if b.get("type") == "tool_result"]
    assert "aigw-agent-ok" in json.dumps(results)


def test_claude_agent_sdk_runs_its_own_tool_with_thinking_shown(gateway, tmp_path):
    import asyncio

    import claude_agent_sdk as sdk

    Claude.seen.clear()
    calls = []

    @sdk.tool("marker", "Say the marker word back", {"word": str})
    async def marker(args):
        calls.append(args)
        return {"content": [{"type": "text", "text": f"marker {args['word']}"}]}

    options = sdk.ClaudeAgentOptions(
        mcp_servers={"gw": sdk.create_sdk_mcp_server("gw", tools=[marker])}, allowed_tools=[SDK_TOOL],
        cwd=str(tmp_path), setting_sources=[], max_turns=4,
        env=quiet_env(tmp_path, ANTHROPIC_BASE_URL=f"http://{gateway}", ANTHROPIC_API_KEY=KEY))

    async def run():
        return [m async for m in sdk.query(prompt="say the marker", options=options)]

    messages = asyncio.run(asyncio.wait_for(run(), 300))
    result = messages[-1]
    assert isinstance(result, sdk.ResultMessage) and not result.is_error, messages
    assert result.result == "The tool said: marker aigw-sdk-ok"
    assert calls == [SDK_INPUT]
    # The reasoning reached the agent's program as a thinking block, signature and all.
    thoughts = [b for m in messages if isinstance(m, sdk.AssistantMessage) for b in m.content
                if isinstance(b, sdk.ThinkingBlock)]
    assert [(t.thinking, t.signature) for t in thoughts] == [(THOUGHT, SIGNATURE)] * 2  # search, call
    turns = [body for path, _, body in Claude.seen if path == "/v1/messages"]
    assert len(turns) == 3, [p for p, _, _ in Claude.seen]
    # The deferred tool travelled with its defer_loading; ToolSearch's answer (a tool_reference block, which
    # the gateway does not model) reached the upstream as the SDK sent it.
    assert next(t for t in turns[1]["tools"] if t["name"] == SDK_TOOL)["defer_loading"] is True
    found = [b for m in turns[1]["messages"] if isinstance(m["content"], list) for b in m["content"]
             if b.get("tool_use_id") == "toolu_search"]
    assert found[0]["content"] == [{"type": "tool_reference", "tool_name": SDK_TOOL}]
    said = next(m for m in turns[-1]["messages"] if m["role"] == "assistant")
    assert said["content"][0] == {"type": "thinking", "thinking": THOUGHT, "signature": SIGNATURE}


class Reasoner(http.server.BaseHTTPRequestHandler):
    """An OpenAI-style reasoning model, scripted: it thinks and calls the tool until the tool's output comes back,
    then answers with what the tool said. Every request body is kept."""
    protocol_version = "HTTP/1.1"
    seen = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        self.seen.append(body)
        tool = next((m for m in body["messages"] if m["role"] == "tool"), None)
        if tool is None:
            message = {"role": "assistant", "content": None, "reasoning_content": "I need the weather tool.",
                       "tool_calls": [{"id": "call_w1", "type": "function",
                                       "function": {"name": "get_weather", "arguments": '{"city": "Lima"}'}}]}
            finish = "tool_calls"
        else:
            message = {"role": "assistant", "content": f"The tool says: {tool['content']}"}
            finish = "stop"
        data = json.dumps({"id": "chatcmpl-a", "object": "chat.completion", "created": 1, "model": "up",
                           "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                           "usage": {"prompt_tokens": 20, "completion_tokens": 10, "total_tokens": 30}}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_openai_agents_sdk_runs_a_function_tool_through_the_responses_door(tmp_path):
    import asyncio

    import agents
    from openai import AsyncOpenAI

    upstream = serve_upstream(Reasoner)
    proc, addr, lines = start_gateway(tmp_path, upstream, "openai", "gpt-*", 32000)
    try:
        agents.set_tracing_disabled(True)  # no traces leave the machine

        @agents.function_tool
        def get_weather(city: str) -> str:
            """The weather in a city."""
            return f"sunny in {city}"

        client = AsyncOpenAI(base_url=f"http://{addr['grpc']}/v1", api_key=KEY, max_retries=0)
        agent = agents.Agent(name="weather", instructions="Answer with the tool.", tools=[get_weather],
                             model=agents.OpenAIResponsesModel(model="gpt-5.9-agent", openai_client=client))
        result = asyncio.run(agents.Runner.run(agent, "weather in Lima?"))
    finally:
        stop_gateway(proc, lines, upstream)
    assert result.final_output == "The tool says: sunny in Lima"
    assert len(Reasoner.seen) == 2
    # The client's model name passed through; the tool's output and the reasoning went back in turn 2.
    assert Reasoner.seen[0]["model"] == "gpt-5.9-agent"
    turn2 = Reasoner.seen[1]["messages"]
    assert any(m["role"] == "tool" and m["content"] == "sunny in Lima" for m in turn2)
    said = next(m for m in turn2 if m["role"] == "assistant")
    assert said["tool_calls"][0]["function"]["name"] == "get_weather"


STREAMED_THOUGHT = "The marker is in a file; read it."


class Streamer(http.server.BaseHTTPRequestHandler):
    """An OpenAI-style reasoning model that streams, scripted: it reasons, then streams a call of `tool` with
    `args` in pieces, until the tool's output comes back; then it says whether the output holds `marker`.
    Every request is kept."""
    protocol_version = "HTTP/1.1"
    seen = []
    tool = "read_file"
    args = {}
    marker = "aigw-qwen-ok"

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        self.seen.append(body)
        start_event_stream(self)

        def chunk(delta, finish=None, usage=None):
            data = {"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 1, "model": body["model"],
                    "choices": [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}]}
            if usage:
                data["usage"] = usage
            sse_chunk(self.wfile, f"data: {json.dumps(data)}\n\n")

        tool = next((m for m in body["messages"] if m["role"] == "tool"), None)
        chunk({"role": "assistant", "content": ""})
        if tool is None:
            for piece in STREAMED_THOUGHT.split(" "):
                chunk({"reasoning_content": piece + " "})
            args = json.dumps(self.args)
            chunk({"tool_calls": [{"index": 0, "id": "call_q1", "type": "function",
                                   "function": {"name": self.tool, "arguments": ""}}]})
            for i in range(0, len(args), 8):
                chunk({"tool_calls": [{"index": 0, "function": {"arguments": args[i:i + 8]}}]})
            chunk({}, "tool_calls")
        else:
            content = tool["content"] if isinstance(tool["content"], str) else json.dumps(tool["content"])
            said = f"The tool says {self.marker}." if self.marker in content else "No marker."
            for piece in said.split(" "):
                chunk({"content": piece + " "})
            chunk({}, "stop")
        chunk(None, usage={"prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42})
        sse_chunk(self.wfile, "data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")

    def log_message(self, *args):
        pass


def test_qwen_code_reads_a_file_through_the_chat_door(tmp_path):
    upstream = serve_upstream(Streamer)
    marker = tmp_path / "work" / "marker.txt"
    marker.parent.mkdir()
    marker.write_text("aigw-qwen-ok\n")
    Streamer.seen.clear()
    Streamer.tool, Streamer.args, Streamer.marker = "read_file", {"file_path": str(marker)}, "aigw-qwen-ok"
    proc, addr, lines = start_gateway(tmp_path, upstream, "openai", "qwen3-*", 65536)
    try:
        done = subprocess.run(
            [str(AGENTS / "qwen"), "read marker.txt and tell me what it says", "--output-format", "stream-json",
             "--include-partial-messages"],
            env=quiet_env(tmp_path, OPENAI_BASE_URL=f"http://{addr['grpc']}/v1", OPENAI_API_KEY=KEY,
                          OPENAI_MODEL="qwen3-coder-next"),
            cwd=marker.parent, capture_output=True, text=True, timeout=300)
    finally:
        stop_gateway(proc, lines, upstream)
    assert done.returncode == 0, done.stdout + done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    result = events[-1]
    assert result["type"] == "result" and not result["is_error"], result
    assert result["result"].strip() == "The tool says aigw-qwen-ok."
    # The reasoning reached the agent as it streamed, a piece at a time.
    thinking = [e["event"]["delta"]["thinking"] for e in events if e["type"] == "stream_event"
                and e["event"].get("delta", {}).get("type") == "thinking_delta"]
    assert len(thinking) == len(STREAMED_THOUGHT.split(" ")) and "".join(thinking).strip() == STREAMED_THOUGHT
    assert len(Streamer.seen) == 2 and Streamer.seen[0]["model"] == "qwen3-coder-next"
    # Turn 2: the call with its reasoning (qwen-code sends it as reasoning_content and reasoning both), and the
    # file's content.
    said = next(m for m in Streamer.seen[1]["messages"] if m["role"] == "assistant")
    assert json.loads(said["tool_calls"][0]["function"]["arguments"]) == {"file_path": str(marker)}
    assert said["reasoning_content"].strip() == STREAMED_THOUGHT
    assert any(m["role"] == "tool" and "aigw-qwen-ok" in json.dumps(m["content"]) for m in Streamer.seen[1]["messages"])


def test_codex_exec_runs_a_command_through_the_responses_door(tmp_path):
    upstream = serve_upstream(Streamer)
    Streamer.seen.clear()
    Streamer.tool, Streamer.args, Streamer.marker = "exec_command", {"cmd": "echo aigw-codex-ok"}, "aigw-codex-ok"
    proc, addr, lines = start_gateway(tmp_path, upstream, "openai", "gpt-*", 128000)
    try:
        kinds = codex(tmp_path, addr["grpc"])
    finally:
        stop_gateway(proc, lines, upstream)
    assert kinds["reasoning"]["text"].strip() == STREAMED_THOUGHT
    assert kinds["command_execution"]["aggregated_output"] == "aigw-codex-ok\n"
    assert kinds["agent_message"]["text"].strip() == "The tool says aigw-codex-ok."
    assert len(Streamer.seen) == 2 and Streamer.seen[0]["model"] == "gpt-5.9-codex"
    # Codex's namespace tool went as functions; its hosted web_search and client_metadata were left out, and
    # the gateway's log names them.
    tools = [t["function"]["name"] for t in Streamer.seen[0]["tools"]]
    assert "exec_command" in tools and any(t.startswith("multi_agent_v1__") for t in tools), tools
    left_out = next(line for line in lines if "Responses fields left out" in line)
    assert "client_metadata" in left_out and ":web_search" in left_out, left_out
    turn2 = Streamer.seen[1]["messages"]
    said = next(m for m in turn2 if m["role"] == "assistant")
    assert said["reasoning_content"].strip() == STREAMED_THOUGHT
    assert json.loads(said["tool_calls"][0]["function"]["arguments"]) == {"cmd": "echo aigw-codex-ok"}
    assert any(m["role"] == "tool" and "aigw-codex-ok" in json.dumps(m["content"]) for m in turn2)


class ResponsesModel(http.server.BaseHTTPRequestHandler):
    """OpenAI's Responses API, scripted as a stateless reasoning model: it reasons (its item id and encrypted
    content to be sent back), then streams an exec_command call's arguments in pieces, until the command's
    output comes back; then it answers with it. Every request body is kept."""
    protocol_version = "HTTP/1.1"
    seen = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        self.seen.append(body)
        start_event_stream(self)

        def ev(e):
            anthropic_event(self.wfile, e)  # `event: <type>` and `data:`, as the Responses API writes them

        output = next((i["output"] for i in body["input"] if i.get("type") == "function_call_output"), None)
        turn = len(self.seen)
        ev({"type": "response.created", "response": {"id": f"resp_c{turn}", "model": body["model"],
                                                     "status": "in_progress", "output": []}})
        if output is None:
            ev({"type": "response.output_item.added", "output_index": 0,
                "item": {"type": "reasoning", "id": "rs_c1", "summary": []}})
            for piece in STREAMED_THOUGHT.split(" "):
                ev({"type": "response.reasoning_summary_text.delta", "item_id": "rs_c1", "delta": piece + " "})
            ev({"type": "response.output_item.done", "output_index": 0,
                "item": {"type": "reasoning", "id": "rs_c1", "encrypted_content": "enc_c1",
                         "summary": [{"type": "summary_text", "text": STREAMED_THOUGHT + " "}]}})
            call = {"type": "function_call", "id": "fc_c1", "call_id": "call_c1", "name": "exec_command"}
            ev({"type": "response.output_item.added", "output_index": 1, "item": {**call, "arguments": ""}})
            args = json.dumps({"cmd": "echo aigw-codex-ok"})
            for i in range(0, len(args), 8):
                ev({"type": "response.function_call_arguments.delta", "item_id": "fc_c1", "delta": args[i:i + 8]})
            ev({"type": "response.output_item.done", "output_index": 1, "item": {**call, "arguments": args}})
        else:
            said = "The tool says aigw-codex-ok." if "aigw-codex-ok" in json.dumps(output) else "No marker."
            message = {"type": "message", "id": "msg_c2", "role": "assistant"}
            ev({"type": "response.output_item.added", "output_index": 0, "item": {**message, "content": []}})
            ev({"type": "response.output_text.delta", "item_id": "msg_c2", "delta": said})
            ev({"type": "response.output_item.done", "output_index": 0,
                "item": {**message, "content": [{"type": "output_text", "text": said}]}})
        ev({"type": "response.completed", "response": {"id": f"resp_c{turn}", "status": "completed", "output": [],
                                                       "usage": {"input_tokens": 50, "output_tokens": 20}}})
        self.wfile.write(b"0\r\n\r\n")

    def log_message(self, *args):
        pass


def codex(tmp_path, addr):
    """`codex exec --json` against the gateway, as docs/agents.md configures it (a custom Responses provider, no
    update checks, no analytics); its sandbox bypassed, which needs user namespaces the test machine lacks."""
    home = tmp_path / "home" / ".codex"
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(f"""
model = "gpt-5.9-codex"
model_provider = "aigw"
check_for_update_on_startup = false
[model_providers.aigw]
name = "aigw"
base_url = "http://{addr}/v1"
env_key = "AIGW_API_KEY"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0
[analytics]
enabled = false
""")
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    done = subprocess.run(
        [str(AGENTS / "codex"), "exec", "--json", "--skip-git-repo-check",
         "--dangerously-bypass-approvals-and-sandbox", "run the marker command"],
        env=quiet_env(tmp_path, AIGW_API_KEY=KEY, CODEX_HOME=str(home)),
        cwd=work, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout + done.stderr
    items = [json.loads(line)["item"] for line in done.stdout.splitlines()
             if line.startswith("{") and json.loads(line)["type"] == "item.completed"]
    return {i["type"]: i for i in items}


def test_codex_keeps_its_encrypted_reasoning_and_tools_with_a_responses_upstream(tmp_path):
    upstream = serve_upstream(ResponsesModel)
    ResponsesModel.seen.clear()
    proc, addr, lines = start_gateway(tmp_path, upstream, "responses", "gpt-*", 128000)
    try:
        kinds = codex(tmp_path, addr["grpc"])
    finally:
        stop_gateway(proc, lines, upstream)
    assert kinds["reasoning"]["text"].strip() == STREAMED_THOUGHT
    assert kinds["command_execution"]["aggregated_output"] == "aigw-codex-ok\n"
    assert kinds["agent_message"]["text"] == "The tool says aigw-codex-ok."
    assert len(ResponsesModel.seen) == 2
    first, second = ResponsesModel.seen
    # Codex's own fields and tools reached the upstream as it sent them: nothing was left out.
    assert not any("Responses fields left out" in line for line in lines)
    assert "client_metadata" in first and "prompt_cache_key" in first
    assert "reasoning.encrypted_content" in first["include"]
    kinds_of_tools = [t["type"] for t in first["tools"]]
    assert "namespace" in kinds_of_tools and "web_search" in kinds_of_tools, kinds_of_tools
    # Turn 2: the reasoning item back with its id and encrypted content, before the call it led to.
    items = second["input"]
    reasoning = next(i for i in items if i.get("type") == "reasoning")
    assert (reasoning["id"], reasoning["encrypted_content"]) == ("rs_c1", "enc_c1")
    call = next(i for i in items if i.get("type") == "function_call")
    assert items.index(reasoning) < items.index(call)
    assert json.loads(call["arguments"]) == {"cmd": "echo aigw-codex-ok"}
