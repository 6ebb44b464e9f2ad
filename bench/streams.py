"""Stream pieces relayed per gateway CPU-second, by the kind of stream: plain text, a reasoning model's (three
quarters of the pieces reasoning, then text) and an agent's tool call (every piece a piece of its arguments).

For each shape, `aigw mock-upstream --shape SHAPE` answers every call with `--stream-tokens` pieces; the gateway
relays them over gRPC `StreamGenerate` to h2load (32 streams in flight); the gateway's CPU comes from
/proc/PID/stat. Rounds alternate the shapes' order; the figure is the median of the rounds.

With `--dialects`, each shape is measured from each upstream API: `aigw mock-upstream --dialect D` sends the same
pieces as Anthropic's Messages events, Gemini's `streamGenerateContent` chunks or Bedrock's ConverseStream
event-stream frames, and the gateway's upstream is of that kind (Bedrock's requests SigV4-signed). Gemini sends a
function call whole, so it has no tool-call row.

Usage: python3 bench/streams.py [--aigw PATH] [--upstream-aigw PATH] [--shapes text,reasoning,tools]
                                [--dialects openai,anthropic,gemini,bedrock]
                                [--duration 8] [--rounds 3] [--stream-tokens 256] [--out DIR] [--smoke]
"""

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare import GATEWAY_CONFIG, KEY, ROOT, Proc, machine, measured, release_binary, scratch  # noqa: E402
from floor import IN_FLIGHT, grpc_body, h2load  # noqa: E402

SHAPES = ["text", "reasoning", "tools"]
DIALECTS = ["openai", "anthropic", "gemini", "bedrock"]
# Each dialect's upstream in the gateway's config, in place of compare.py's OpenAI one.
UPSTREAMS = {
    "openai": 'kind = "openai"\nbase_url = "http://{upstream}/v1"',
    "anthropic": 'kind = "anthropic"\nbase_url = "http://{upstream}/v1"\napi_key_env = "AIGW_BENCH_KEY"',
    "gemini": 'kind = "gemini"\nbase_url = "http://{upstream}/v1beta"\napi_key_env = "AIGW_BENCH_KEY"',
    "bedrock": 'kind = "bedrock"\nbase_url = "http://{upstream}"\nregion = "us-east-1"\n'
               'access_key_id_env = "AIGW_BENCH_KEY"\nsecret_access_key_env = "AIGW_BENCH_KEY"',
}


def gateway_config(dialect, upstream):
    base = 'kind = "openai"\nbase_url = "http://{upstream}/v1"'
    assert base in GATEWAY_CONFIG
    return GATEWAY_CONFIG.replace(base, UPSTREAMS[dialect]).format(upstream=upstream)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--aigw", help="the aigw binary (default: build target/release/aigw)")
    ap.add_argument("--upstream-aigw", help="the binary whose mock-upstream answers (default: --aigw); a fixed build "
                    "keeps the upstream still while the gateway changes")
    ap.add_argument("--baseline", help="a second aigw binary whose text streams are measured in the same rounds, "
                    "interleaved: a before/after on one run, where the VM's drift hits both alike")
    ap.add_argument("--shapes", default=",".join(SHAPES), help="which streams, of text, reasoning, tools")
    ap.add_argument("--dialects", default="openai", help="which upstream APIs, of " + ", ".join(DIALECTS))
    ap.add_argument("--duration", type=int, default=8, help="seconds per measurement")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--stream-tokens", type=int, default=256)
    ap.add_argument("--out", default=str(ROOT / "target" / "bench-streams"))
    ap.add_argument("--smoke", action="store_true", help="a few seconds in all: checks the script, not speed")
    opts = ap.parse_args()
    if opts.smoke:
        opts.duration, opts.rounds, opts.stream_tokens = 1, 1, 32
    aigw = release_binary(opts.aigw)
    shapes = opts.shapes.split(",")
    if not set(shapes) <= set(SHAPES):
        sys.exit(f"--shapes: each of {', '.join(SHAPES)}")
    dialects = opts.dialects.split(",")
    if not set(dialects) <= set(DIALECTS):
        sys.exit(f"--dialects: each of {', '.join(DIALECTS)}")
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    work = scratch("aigw-streams-")
    body = work / "stream.bin"
    body.write_bytes(grpc_body(0))
    pairs = {}
    # What is measured: (row name, gateway binary, shape, dialect); a baseline gets a text row of its own.
    rows = [(shape if dialect == "openai" else f"{dialect} {shape}", aigw, shape, dialect)
            for dialect in dialects for shape in shapes if (dialect, shape) != ("gemini", "tools")]
    if opts.baseline:
        rows.append(("baseline text", opts.baseline, "text", "openai"))
    try:
        for name, binary, shape, dialect in rows:
            # Text needs no --shape, OpenAI no --dialect: an upstream binary from before them can serve those.
            shaped = ["--shape", shape] if shape != "text" else []
            if dialect != "openai":
                shaped += ["--dialect", dialect]
            file = name.replace(" ", "-")
            upstream = Proc([opts.upstream_aigw or aigw, "mock-upstream", "--listen", "127.0.0.1:0", "--tokens",
                             str(opts.stream_tokens), *shaped], work / f"upstream-{file}.log",
                            r"listening addr=(\S+)")
            (work / f"gateway-{file}.toml").write_text(gateway_config(dialect, upstream.match.group(1)))
            gateway = Proc([binary, "serve", "--config", str(work / f"gateway-{file}.toml"), "--listen", "127.0.0.1:0",
                            "--admin-listen", "127.0.0.1:0"], work / f"gateway-{file}.log",
                           r"aigw listening addr=(\S+) admin=(\S+)", env={"AIGW_BENCH_KEY": KEY})
            pairs[name] = (upstream, gateway)
        names = [name for name, _, _, _ in rows]
        url = lambda name: f"http://{pairs[name][1].match.group(1)}/holysheepai.AIService/StreamGenerate"
        for name in names:  # warm-up
            h2load(url(name), body, 1)
        rounds = []
        for r in range(opts.rounds):
            row = {}
            for shape in names if r % 2 == 0 else names[::-1]:
                upstream, gateway = pairs[shape]
                (calls, bad, _), cpu = measured([upstream, gateway], lambda: h2load(url(shape), body, opts.duration))
                row[shape] = {"streams_s": calls / opts.duration,
                              "pieces_per_cpu_s": calls * opts.stream_tokens / max(cpu[1], 1e-9),
                              "errors": bad}
            rounds.append(row)
            print(f"round {r + 1}: {json.dumps(row)}", file=sys.stderr)
    finally:
        for upstream, gateway in pairs.values():
            gateway.stop()
            upstream.stop()

    def cell(shape, key):
        values = [r[shape][key] for r in rounds]
        m = statistics.median(values)
        return f"{m:,.0f}" + (f" ({min(values):,.0f}–{max(values):,.0f})" if len(values) > 1 else "")

    lines = [f"Streams of {opts.stream_tokens} pieces over gRPC `StreamGenerate` (h2load, {IN_FLIGHT} in flight), "
             f"{opts.rounds} rounds of {opts.duration} s, medians (min–max):", "",
             "| stream | pieces per gateway CPU-second | streams/s |", "|---|---:|---:|"]
    titles = {"text": "text", "reasoning": "reasoning (¾ reasoning_content, then text)",
              "tools": "tool call (every piece an arguments piece)", "baseline text": f"baseline: text ({opts.baseline})"}
    for name, _, shape, dialect in rows:
        if dialect != "openai":
            titles[name] = f"{dialect}: {titles[shape].replace('reasoning_content', 'reasoning')}"
    for name in names:
        lines.append(f"| {titles[name]} | {cell(name, 'pieces_per_cpu_s')} | {cell(name, 'streams_s')} |")
    errors = sum(r[n]["errors"] for r in rounds for n in names)
    lines += ["", f"errors: {errors}."]
    text = "\n".join(lines)
    print(text)
    (out / "streams.md").write_text(text + "\n")
    (out / "streams.json").write_text(json.dumps({"machine": machine(), "settings": vars(opts), "rounds": rounds},
                                                 indent=1))
    if errors:
        sys.exit(f"{errors} calls failed")


if __name__ == "__main__":
    main()
