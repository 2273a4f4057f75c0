"""`apollo bench`: real measurements on a tiny config (values are checked for consistency, never for speed)."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.flop_counter import flop_registry

from apollo_restore.evaluate.bench import BenchConfig, count_flops, format_table, matmul_gflops, run_bench
from apollo_restore.model import Apollo, ApolloConfig


def test_flop_count_matches_the_architecture_by_hand():
    """Every weight matrix of the blocks acts once per (frame, band) token; attention adds 4 K N per token;
    the band split/merge weights act once per frame; the 7-tap depthwise convs add 2*7*N per token each."""
    config = ApolloConfig.from_size("16x2")
    model = Apollo(config).eval()
    samples = config.sample_rate // 4
    frames = 1 + samples // config.hop  # centred STFT
    tokens = frames * config.num_bands
    block_matrices = sum(p.numel() for n, p in model.blocks.named_parameters() if p.dim() == 2)
    band_matrices = sum(p.numel() for n, p in [*model.split.named_parameters(), *model.merge.named_parameters()]
                        if n.endswith("weight") and p.dim() >= 2)
    expected = (2 * tokens * block_matrices
                + config.num_layers * tokens * 4 * config.num_bands * config.feature_dim
                + config.num_layers * config.tcn_blocks * tokens * 2 * config.conv_kernel * config.feature_dim
                + 2 * frames * band_matrices)
    counted = count_flops(model, torch.zeros(1, 1, samples))
    assert counted == pytest.approx(expected, rel=0.01)  # attention included: the CPU kernel's formula is used
    cpu_attention = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    assert cpu_attention not in flop_registry  # for that count only: torch's registry is not patched


def test_run_bench_measures_every_field():
    result = run_bench(BenchConfig(size="16x1", iterations=2, warmup=1, long_seconds=(1.5,), threads=1))
    assert result.params == Apollo(ApolloConfig.from_size("16x1")).num_parameters()
    assert result.threads == 1 and result.iterations == 2 and result.device == "cpu"
    assert result.rtf_mean > 0 and result.rtf_std >= 0
    assert result.achieved_gflops == pytest.approx(result.gflop_per_second_of_audio / result.rtf_mean)
    assert 0 < result.fraction_of_matmul < 1.5 and result.page_faults_per_iter >= 0
    [long] = result.long
    assert long["seconds"] == 1.5 and long["rtf"] == pytest.approx(long["wall_s"] / 1.5)
    assert long["peak_mb"] > 50  # the process holds torch: tens of MiB at least
    table = format_table([result, result]).splitlines()
    assert len(table) == 4 and "RTF 1.5 s st." in table[0] and table[2].startswith("16x1")
    payload = result.to_dict()
    assert payload["fraction_of_matmul"] == result.fraction_of_matmul and payload["long"] == [long]


def test_matmul_gflops_is_the_matmuls_flops_over_its_fastest_run(monkeypatch):
    """On a clock whose three timed runs take 0.5, 0.25 and 0.75 s, the rate is torch's own FLOP count of the
    matmul (2 n^3) over the fastest run; on the real clock it is a finite positive rate."""
    from torch.utils.flop_counter import FlopCounterMode

    from apollo_restore.evaluate import bench

    size = 64
    with FlopCounterMode(display=False) as counter:
        torch.mm(torch.randn(size, size), torch.randn(size, size))
    ticks = iter([0.0, 0.5, 1.0, 1.25, 2.0, 2.75])  # start/stop of each timed run
    with monkeypatch.context() as patch:
        patch.setattr(bench.time, "perf_counter", lambda: next(ticks))
        value = matmul_gflops(torch.device("cpu"), size=size, iterations=3)
    assert value == pytest.approx(counter.get_total_flops() / 0.25 / 1e9, rel=1e-12)
    measured = matmul_gflops(torch.device("cpu"), size=256, iterations=2)
    assert 0 < measured < float("inf")


def test_cli_bench_writes_json(tmp_path, capsys):
    from apollo_restore.cli import main

    out = tmp_path / "bench.json"
    assert main(["bench", "--config", "16x1", "-n", "1", "--warmup", "0", "--long", "0.5", "--device", "cpu",
                 "--engine", "onnx", "-o", str(out)]) == 0
    fp32, bf16, onnx = json.loads(out.read_text())["results"]  # fp32 and bf16 side by side by default
    assert fp32["label"] == "16x1 fp32" and fp32["device"] == "cpu" and len(fp32["long"]) == 1
    assert bf16["label"] == "16x1 bf16" and not bf16["long"] and bf16["rtf_mean"] > 0
    assert onnx["label"] == "16x1 fp32 onnx" and onnx["rtf_mean"] > 0
    assert fp32["gflop_per_second_of_audio"] == bf16["gflop_per_second_of_audio"] == onnx["gflop_per_second_of_audio"]
    assert "GFLOP/s" in capsys.readouterr().out


def test_cli_bench_int8_row_counts_the_same_model(tmp_path):
    from apollo_restore.cli import main

    out = tmp_path / "bench.json"
    assert main(["bench", "--config", "16x1", "-n", "1", "--warmup", "0", "--long", "--device", "cpu",
                 "--precision", "fp32", "--precision", "int8", "-o", str(out)]) == 0
    fp32, int8 = json.loads(out.read_text())["results"]
    assert int8["label"] == "16x1 int8" and int8["rtf_mean"] > 0
    assert int8["params"] == fp32["params"] > 0  # packed int8 weights are counted as the model's parameters
    assert int8["gflop_per_second_of_audio"] == fp32["gflop_per_second_of_audio"]


@pytest.mark.parametrize("argv", [["--config", "64y2"], [], ["--config", "16x1", "-o", "bench.txt"],
                                  ["--config", "16x1", "--long", "-1"]])
def test_cli_bench_bad_arguments_are_one_line_errors(argv, capsys):
    from apollo_restore.cli import main

    assert main(["bench", *argv]) == (2 if "--long" in argv else 1)  # 2: a usage error, caught by argparse
    err = capsys.readouterr().err.strip()
    assert err.startswith("apollo bench: error:") and len(err.splitlines()) == 1
