"""The cost estimate: parameter counts on the meta device, memory arithmetic, schedule,
data totals with the real tokenizer, hardware profiles and the `estimate` command."""

import json
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml

from tunesmith.config.schema import TrainingConfig
from tunesmith.errors import ConfigError
from tunesmith.modeling.adapters import LoraSettings
from tunesmith.modeling.inventory import arch_shape
from tunesmith.training import cost, hardware
from tunesmith.training.cost import Hardware, RunPlan
from tunesmith.training.loop import Schedule
from tunesmith.training.methods import LoraMethod

CPU = Hardware("test cpu", "cpu", 0.1, 10.0, 0.5, 16.0, 1.0)


def _real(toy_dir: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(toy_dir, dtype=torch.float32)


@pytest.mark.parametrize("variant,targets", [("lora", "all-linear"), ("dora", "all-linear"),
                                             ("lora", ["q_proj", "v_proj"])])
def test_meta_count_matches_the_loaded_model(toy_dir, variant, targets) -> None:
    shape = arch_shape(str(toy_dir), None, variant, 4, targets)
    model = _real(toy_dir)
    assert shape.params == sum(p.numel() for p in model.parameters())
    assert (shape.layers, shape.hidden, shape.vocab, shape.tied) == (2, 32, model.config
                                                                     .vocab_size, False)
    peft = LoraMethod(LoraSettings(r=4, alpha=8, target_modules=targets,
                                   variant=variant)).prepare(model)
    assert shape.adapter_params == sum(p.numel() for p in peft.parameters() if p.requires_grad)


def _shape(toy_dir: Path):
    return arch_shape(str(toy_dir), None, "lora", 4)


def test_memory_parts_follow_the_method(toy_dir) -> None:
    shape = _shape(toy_dir)
    plan = RunPlan(method="full", rows=10, tokens=1000, supervised=200, longest=120,
                   longest_supervised=30)
    full = cost.memory_split(shape, plan, CPU)
    assert full["gradients_gb"] == round(shape.params * 4 / 1e9, 6)
    assert full["optimizer_states_gb"] == round(shape.params * 8 / 1e9, 6)
    lora = cost.memory_split(shape, RunPlan(**{**plan.__dict__, "method": "lora"}), CPU)
    assert lora["optimizer_states_gb"] == round(shape.adapter_params * 8 / 1e9, 6)
    assert lora["activations_gb"] == full["activations_gb"]
    always = lora["weights_gb"] + lora["optimizer_states_gb"] + lora["runtime_overhead_gb"]
    transient = lora["activations_gb"] + lora["logits_gb"]  # > LoRA's tiny gradients
    assert lora["peak_gb"] == pytest.approx(always + transient, abs=1e-5)
    big = cost.memory_split(shape, RunPlan(**{**plan.__dict__, "longest": 1,
                                              "longest_supervised": 1}), CPU)
    assert big["peak_gb"] == pytest.approx(big["weights_gb"] + big["optimizer_states_gb"] +
                                           big["runtime_overhead_gb"] + big["gradients_gb"],
                                           abs=1e-5)  # full: gradients outweigh 1 token
    four = cost.memory_split(shape, RunPlan(**{**plan.__dict__, "method": "lora",
                                               "base_bits": 4}), CPU)
    saved = shape.linear_params * (4 - cost.BASE_BITS_BYTES[4]) / 1e9
    assert lora["weights_gb"] - four["weights_gb"] == pytest.approx(saved, abs=1e-5)
    longer = cost.memory_split(shape, RunPlan(**{**plan.__dict__, "longest": 240}), CPU)
    assert longer["activations_gb"] == pytest.approx(2 * full["activations_gb"], rel=0.01)


def test_flops_count_three_passes_for_full_and_two_for_lora(toy_dir) -> None:
    shape = _shape(toy_dir)
    plan = RunPlan(method="full", rows=10, tokens=1000, supervised=200)
    full = cost.step_flops(shape, plan)
    lora = cost.step_flops(shape, RunPlan(**{**plan.__dict__, "method": "lora"}))
    assert full / lora == pytest.approx(1.5)
    body = shape.params - shape.embedding_params - shape.head_params
    forward = 8 * 100 * (2 * body + 2 * 2 * 32 * 100) + 8 * 20 * 2 * shape.head_params
    assert lora == pytest.approx(2 * forward)


@pytest.mark.parametrize("rows,batch,accum,epochs,max_steps",
                         [(37, 4, 1, 1.0, None), (37, 4, 3, 2.5, None), (100, 8, 2, 3, 7)])
def test_schedule_counts_like_the_loop(rows, batch, accum, epochs, max_steps) -> None:
    plan = RunPlan(batch_size=batch, grad_accum=accum, epochs=epochs, max_steps=max_steps,
                   rows=rows)
    cfg = TrainingConfig(batch_size=batch, grad_accum=accum, epochs=epochs,
                         max_steps=max_steps)
    loop_schedule = Schedule([10] * rows, cfg, 1)
    per_epoch, total = cost.schedule(plan)
    assert total == loop_schedule.total_steps()
    assert per_epoch == math.ceil(loop_schedule.per_epoch / accum)


@pytest.mark.parametrize(("epochs", "accum", "processes", "max_steps"),
                         [(1.0, 1, 1, None), (2.5, 3, 1, None), (3.0, 2, 2, None),
                          (2.0, 1, 3, 5)])
def test_budget_schedule_counts_like_the_loop(tmp_path, toy_dir, tokenizer, write_jsonl,
                                              epochs, accum, processes, max_steps) -> None:
    from tunesmith.config import load_config
    from tunesmith.pipeline import prepare_data
    from tunesmith.planning import data_totals, run_plan
    from tunesmith.training.schedule import schedule_for

    path = _config(tmp_path, toy_dir, write_jsonl(ROWS), batch_tokens=300, epochs=epochs,
                   grad_accum=accum, max_steps=max_steps)
    config = load_config(str(path), [])
    plan = run_plan(config, data_totals(config, tokenizer), processes=processes)
    lengths = [len(e.input_ids) for e in prepare_data(config, tokenizer, tmp_path / "r").train]
    loop = schedule_for(lengths, config.training, processes)
    per_epoch, total = cost.schedule(plan)
    assert total == loop.total_steps() > 0
    assert per_epoch == math.ceil(loop.per_epoch / accum)
    assert plan.budget_batches == [len(budget) for budget in
                                   [_cut(lengths, config.training, e) for e in
                                    range(math.ceil(epochs))]]
    # more examples per micro-batch than batch_size 4 would hold: the budget replaces it
    assert cost.micro_examples(plan) == pytest.approx(
        plan.rows * len(plan.budget_batches) / sum(plan.budget_batches)) and \
        cost.micro_examples(plan) > 4
    # a large file is sampled: the sample's cut scales up by rows / sampled rows
    sampled = run_plan(config, data_totals(config, tokenizer, sample_rows=15))
    assert sampled.budget_batches[0] == pytest.approx(plan.budget_batches[0], rel=0.25)


def _cut(lengths: list[int], cfg: TrainingConfig, epoch: int) -> list[list[int]]:
    from tunesmith.training.schedule import budget_batches

    return budget_batches(lengths, cfg, epoch)


def test_budget_sizes_memory_by_tokens(toy_dir) -> None:
    shape = _shape(toy_dir)
    plan = RunPlan(rows=10, tokens=1000, supervised=200, longest=120, longest_supervised=30,
                   batch_size=8)
    budget = RunPlan(**{**plan.__dict__, "batch_tokens": 480, "budget_batches": [3]})
    fixed, tokens = cost.memory_split(shape, plan, CPU), cost.memory_split(shape, budget, CPU)
    assert cost.micro_tokens(plan) == 8 * 120 and cost.micro_tokens(budget) == 480
    assert tokens["activations_gb"] == pytest.approx(fixed["activations_gb"] / 2, rel=0.01)
    # a budget below the longest example: that example trains alone, and sizes the peak
    alone = RunPlan(**{**budget.__dict__, "batch_tokens": 60})
    assert cost.micro_tokens(alone) == 120
    # time: a step trains 10 / 3 examples (10 rows in 3 budget micro-batches), not 8
    ratio = cost.step_flops(shape, budget) / cost.step_flops(shape, plan)
    assert ratio == pytest.approx(10 / 3 / 8)
    assert cost.schedule(budget) == (3, 3)
    rough = RunPlan(**{**budget.__dict__, "budget_batches": []})  # no lengths: tokens / budget
    assert cost.schedule(rough) == (math.ceil(1000 / 480), math.ceil(1000 / 480))


def _config(tmp_path: Path, toy_dir: Path, train: Path, **training) -> Path:
    cfg = {"model": {"name": str(toy_dir)}, "data": {"train": [str(train)], "max_length": 64,
                                                     "eval_fraction": 0.1},
           "method": {"name": "lora", "r": 4}, "training": {"batch_size": 4, **training}}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


ROWS = [{"prompt": f"Question number {i}?", "completion": "An answer " * (i % 5 + 1)}
        for i in range(50)]


def test_data_totals_tokenize_like_training(tmp_path, toy_dir, tokenizer, write_jsonl) -> None:
    from tunesmith.config import load_config
    from tunesmith.pipeline import prepare_data
    from tunesmith.planning import data_totals

    config = load_config(str(_config(tmp_path, toy_dir, write_jsonl(ROWS))), [])
    totals = data_totals(config, tokenizer)
    prepared = prepare_data(config, tokenizer, tmp_path / "run")
    assert totals.rows == len(prepared.train) == 45
    assert totals.tokens == sum(len(e.input_ids) for e in prepared.train)
    assert totals.supervised == sum(e.supervised for e in prepared.train)
    assert totals.longest == max(len(e.input_ids) for e in prepared.train)
    sampled = data_totals(config, tokenizer, sample_rows=15)
    assert sampled.sampled_rows == 15 and sampled.rows == 45
    assert sampled.tokens == pytest.approx(totals.tokens, rel=0.15)


def test_gpu_profiles_and_unknown_hardware() -> None:
    h100 = hardware.hardware_profile("H100")
    assert (h100.kind, h100.memory_gb, h100.peak_tflops) == ("gpu", 80.0, 989.0)
    with pytest.raises(ConfigError, match="unknown"):
        hardware.hardware_profile("tpu-v9")


def test_cpu_speed_cache_keeps_the_best_measurement(tmp_path, monkeypatch) -> None:
    calls = []
    speeds = iter([(0.2, 8.0), (0.1, 30.0), (0.15, 4.0), (0.05, 1.0)])

    def fake(threads, seconds=1.0):
        calls.append((threads, seconds))
        tflops, bandwidth = next(speeds)
        return {"tflops": tflops, "bandwidth_gb_s": bandwidth}

    monkeypatch.setattr(hardware, "measure_cpu", fake)
    monkeypatch.setattr(hardware, "_THIS_PROCESS", {})
    first = hardware.cpu_profile(2, tmp_path)
    assert hardware.cpu_profile(2, tmp_path) == first  # fixed within a process
    hardware._THIS_PROCESS.clear()  # a new process: measures again
    second = hardware.cpu_profile(2, tmp_path)  # a busy moment: slower matmul, faster copy
    hardware._THIS_PROCESS.clear()
    third = hardware.cpu_profile(2, tmp_path)
    assert (first.peak_tflops, first.bandwidth_gb_s) == (0.2, 8.0)
    assert (second.peak_tflops, second.bandwidth_gb_s) == (0.2, 30.0)
    assert third == second
    # the first measurement is the long one; later ones are short re-checks
    assert calls == [(2, 1.0), (2, hardware.REMEASURE_SECONDS), (2, hardware.REMEASURE_SECONDS)]
    assert hardware.cpu_profile(1, tmp_path).peak_tflops == 0.05  # another thread count


def test_measured_cpu_speed_is_plausible() -> None:
    speed = hardware.measure_cpu(1, seconds=0.2)
    assert 1e-3 < speed["tflops"] < 10 and 0.1 < speed["bandwidth_gb_s"] < 1000


def test_estimate_command_prints_json(tmp_path, toy_dir, write_jsonl) -> None:
    path = _config(tmp_path, toy_dir, write_jsonl(ROWS), epochs=2)
    done = subprocess.run([sys.executable, "-m", "tunesmith.cli.main", "estimate", str(path),
                           "--hardware", "a100-80", "--set", "training.batch_size=2",
                           "--json"], check=False, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert result["run"]["batch_size"] == 2
    assert result["time"]["steps_per_epoch"] == 23 and result["time"]["total_steps"] == 46
    assert result["memory"]["fits"] is True and result["hardware"]["kind"] == "gpu"
    assert result["data"]["rows"] == 45
    text = subprocess.run([sys.executable, "-m", "tunesmith.cli.main", "estimate", str(path),
                           "--hardware", "t4"], check=False, capture_output=True,
                          text=True)
    assert text.returncode == 0 and "peak memory" in text.stdout and "per epoch" in text.stdout
    bad = subprocess.run([sys.executable, "-m", "tunesmith.cli.main", "estimate", str(path),
                          "--set", "training.batch_size=0"], check=False,
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "batch_size" in bad.stderr
    budget = subprocess.run([sys.executable, "-m", "tunesmith.cli.main", "estimate", str(path),
                             "--set", "training.batch_tokens=200"], check=False,
                            capture_output=True, text=True)
    assert budget.returncode == 0, budget.stderr[-2000:]
    assert "micro-batches of at most 200 tokens)" in budget.stdout
    tight = subprocess.run([sys.executable, "-m", "tunesmith.cli.main", "estimate", str(path),
                            "--set", "training.batch_tokens=8"], check=False,
                           capture_output=True, text=True)
    assert tight.returncode == 0, tight.stderr[-2000:]
    assert "micro-batches of at most 8 tokens; examples up to " in tight.stdout
    assert "tokens long train alone)" in tight.stdout
    small = subprocess.run([sys.executable, "-m", "tunesmith.cli.main", "estimate", str(path),
                            "--set", "training.batch_tokens=4"], check=False,
                           capture_output=True, text=True)
    assert small.returncode == 2 and "training.batch_tokens: must be >= 8" in small.stderr
    split = subprocess.run([sys.executable, "-m", "tunesmith.cli.main", "estimate", str(path),
                            "--processes", "4", "--sharding", "fsdp", "--json"], check=False,
                           capture_output=True, text=True)
    assert split.returncode == 0, split.stderr[-2000:]
    sharded = json.loads(split.stdout)
    assert sharded["run"]["sharding"] == "fsdp" and "gathered_weights_gb" in sharded["memory"]


@pytest.mark.parametrize(("quantization", "bits"), [("nf4", 4), ("int4", 4), ("int8", 8)])
def test_qlora_plan_takes_the_bits_of_its_quantization(quantization: str, bits: int) -> None:
    from tunesmith.config.schema import RunConfig
    from tunesmith.planning import DataTotals, run_plan

    config = RunConfig()
    config.method.name, config.method.quantization = "qlora", quantization
    data = DataTotals(rows=10, tokens=100, supervised=20, longest=12, longest_supervised=3,
                      sampled_rows=10, dropped_share=0.0)
    assert run_plan(config, data).base_bits == bits
    assert run_plan(config, data).quantization == quantization
    config.method.name = "lora"
    assert run_plan(config, data).base_bits is None
    assert run_plan(config, data).quantization is None


def test_estimate_refuses_zero_processes(capsys) -> None:
    from tunesmith.cli.main import main

    with pytest.raises(SystemExit) as stop:
        main(["estimate", "config.yaml", "--processes", "0"])
    assert stop.value.code == 2
    assert "at least 1" in capsys.readouterr().err


def test_a_quantized_base_on_cpu_adds_its_weight_expansion(toy_dir) -> None:

    from tunesmith.planning import describe

    shape = _shape(toy_dir)
    nf4 = RunPlan(base_bits=4, quantization="nf4", grad_accum=2, rows=10, tokens=1000,
                  supervised=200, longest=120, longest_supervised=30)
    int8 = replace(nf4, base_bits=8, quantization="int8")
    lora = replace(nf4, base_bits=None, quantization=None)
    plain = cost.step_seconds(shape, lora, CPU)
    weights = shape.linear_params * 2  # 2 micro-batches per step; CPU copies 10 GB/s
    # nf4: forward and backward each expand (0.5 B read, 4 B written); int8: the forward
    # expands once (1 B read, 4 B written) and autograd keeps the copy for the backward
    assert cost.step_seconds(shape, nf4, CPU) - plain == pytest.approx(weights * 2 * 4.5 / 1e10)
    assert cost.step_seconds(shape, int8, CPU) - plain == pytest.approx(weights * 5.0 / 1e10)
    assert cost.step_seconds(shape, nf4, CPU) > cost.step_seconds(shape, int8, CPU) > plain
    checkpointed = replace(nf4, gradient_checkpointing=True)  # the recomputed forward too
    assert cost.dequant_seconds(shape, checkpointed, CPU) == pytest.approx(
        weights * 3 * 4.5 / 1e10)
    gpu = Hardware("gpu", "gpu", 100.0, 1000.0, 0.35, 80.0, 1.5)
    assert cost.dequant_seconds(shape, nf4, gpu) == 0.0  # fused 4-bit kernels

    result = cost.estimate(shape, nf4, CPU)
    extra = cost.dequant_seconds(shape, nf4, CPU)
    assert result["time"]["dequant_seconds_per_step"] == round(extra, 3)
    assert cost.estimate(shape, lora, CPU)["notes"] == []
    result["model"]["name"], result["run"]["method"] = "toy", "qlora"
    result["data"] = {"rows": 10, "tokens_per_epoch": 1000, "supervised_tokens_per_epoch": 200,
                      "longest_example": 120}
    note = describe(result).splitlines()[-1]
    assert note.startswith(f"note: nf4 on CPU: {shape.linear_params / 1e6:,.1f}M base weights")
    assert f"2x per micro-batch: +{extra:.2f} s/step at least" in note
    assert "no 4-bit training kernel for CPUs" in note and "int8 or int4 (torchao) expand " \
        "once" in note


@pytest.mark.parametrize("native", [True, False])
def test_bf16_on_a_cpu_counts_the_frozen_copies_and_says_what_time_leaves_out(
        toy_dir, monkeypatch, native) -> None:

    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: native)
    shape = _shape(toy_dir)
    lora = RunPlan(rows=10, tokens=1000, supervised=200, longest=120, longest_supervised=30)
    bf16 = replace(lora, mixed_precision="bf16")
    extra = cost.memory_split(shape, bf16, CPU)["weights_gb"] - cost.memory_split(
        shape, lora, CPU)["weights_gb"]
    copies = (shape.linear_params + shape.head_params) * 2 / 1e9 if native else 0.0
    assert extra == pytest.approx(copies, abs=1e-5)
    notes = cost.estimate(shape, bf16, CPU)["notes"]
    assert (len(notes) == 1 and "time assumes float32" in notes[0]) if native else not notes
    for other in (replace(bf16, method="full"),  # trained weights: cast per call
                  replace(bf16, dtype="bfloat16")):  # already bf16: nothing to copy
        assert cost.memory_split(shape, other, CPU)["weights_gb"] == cost.memory_split(
            shape, replace(other, mixed_precision="no"), CPU)["weights_gb"]
        note = cost.estimate(shape, other, CPU)["notes"]
        assert all("copies" not in n for n in note)
    gpu = Hardware("gpu", "gpu", 100.0, 1000.0, 0.35, 80.0, 1.5)
    assert cost.estimate(shape, bf16, gpu)["notes"] == []


# SmolLM2-135M's shape and a 2-core CPU, for the tests of several processes
SMOL_SHAPE = cost.ArchShape(params=134_515_008, embedding_params=28_311_552,
                            head_params=28_311_552, linear_params=106_168_320, layers=30,
                            hidden=576, intermediate=1536, kv_hidden=192, vocab=49152, heads=9,
                            tied=True)
SMOL_CPU = Hardware("cpu", "cpu", 0.17, 20.0, 0.6, runtime_gb=0.45)


def test_ddp_counts_its_gradient_buckets() -> None:
    # several processes: the gradients live in DDP's all-reduce buckets from the start, so
    # they add to the activations instead of peaking at another moment
    shape, cpu = SMOL_SHAPE, SMOL_CPU
    one, two = (cost.memory_split(shape, RunPlan(method="full", batch_size=4, longest=200,
                                                 processes=n), cpu) for n in (1, 2))
    assert "gradient_buckets_gb" not in one
    assert two["gradient_buckets_gb"] == one["gradients_gb"]
    steady = one["weights_gb"] + one["optimizer_states_gb"] + one["runtime_overhead_gb"]
    training = one["activations_gb"] + one["logits_gb"]
    assert one["peak_gb"] == pytest.approx(steady + max(training, one["gradients_gb"]),
                                           abs=1e-5)
    assert two["peak_gb"] == pytest.approx(steady + one["gradients_gb"] + training, abs=1e-5)
    notes = [cost.estimate(shape, RunPlan(method="full", processes=n), cpu)["notes"]
             for n in (1, 2)]
    assert notes[0] == [] and len(notes[1]) == 1 and "per process under DDP" in notes[1][0]


def test_fsdp_splits_model_states_and_gathers_for_checkpoints() -> None:
    # SmolLM2-135M, full fine-tuning, 2 processes: FSDP splits weights, gradients and AdamW
    # moments; the root unit (tied embeddings) and two decoder layers are whole at a time
    shape, cpu = SMOL_SHAPE, SMOL_CPU
    gpu = Hardware("gpu", "gpu", 100.0, 1000.0, 0.35, 80.0, runtime_gb=0.45)
    plans = {s: RunPlan(method="full", batch_size=4, longest=100, processes=2, sharding=s)
             for s in ("ddp", "fsdp")}
    ddp, fsdp = (cost.memory_split(shape, plans[s], cpu) for s in ("ddp", "fsdp"))
    for part in ("weights_gb", "gradients_gb", "optimizer_states_gb"):
        assert fsdp[part] == pytest.approx(ddp[part] / 2, abs=1e-6)
    assert "gradient_buckets_gb" not in fsdp
    root, layer = 28_311_552, (134_515_008 - 28_311_552) / 30
    assert fsdp["gathered_weights_gb"] == pytest.approx((root + 2 * layer) * 4 / 1e9, abs=1e-6)
    gather = 134_515_008 * 8 / 1e9  # two float32 moments, gathered after the weights
    assert fsdp["checkpoint_gather_gb"] == pytest.approx(gather, abs=1e-6)
    steady = fsdp["weights_gb"] + fsdp["optimizer_states_gb"] + 0.45
    assert fsdp["peak_gb"] == pytest.approx(steady + gather, abs=1e-5)  # the gather's peak
    longer = cost.memory_split(shape, replace(plans["fsdp"], longest=400), cpu)
    assert longer["peak_gb"] == pytest.approx(  # longer examples: training's peak
        steady + longer["activations_gb"] + longer["logits_gb"]
        + longer["gathered_weights_gb"], abs=1e-5)
    # on a GPU the gather goes to host memory: the device peaks while training
    on_gpu = cost.memory_split(shape, plans["fsdp"], gpu)
    training = max(on_gpu["activations_gb"] + on_gpu["logits_gb"], on_gpu["gradients_gb"])
    assert on_gpu["peak_gb"] == pytest.approx(steady + training + on_gpu["gathered_weights_gb"],
                                              abs=1e-5)
    # one process: nothing to split
    one = RunPlan(method="full", batch_size=4, longest=200, processes=1, sharding="fsdp")
    assert cost.sharded_over(one) == 1 and "gathered_weights_gb" not in cost.memory_split(
        shape, one, cpu)
    note = cost.estimate(shape, plans["fsdp"], cpu)["notes"]
    assert len(note) == 1 and "split 2 ways" in note[0]


def test_fast_steps_are_printed_in_milliseconds() -> None:
    from tunesmith.planning import _clock, _per_step

    assert _per_step(1.934) == "1.93 s/step" and _per_step(0.00068) == "0.68 ms/step"
    assert _clock(0.4) == "under 1 s" and _clock(0) == "0:00:00" and _clock(61.2) == "0:01:02"
