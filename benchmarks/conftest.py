"""pytest hooks of the benchmark suite (test_bench_kernels.py): the run's card and versions go
into pytest-benchmark's machine_info, so every JSON names what it was measured on."""

import subprocess

import torch
import triton


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["torch"] = torch.__version__
    machine_info["triton"] = triton.__version__
    if torch.cuda.is_available():
        dev = torch.cuda.current_device()
        machine_info["gpu"] = torch.cuda.get_device_name(dev)
        machine_info["sms"] = torch.cuda.get_device_properties(dev).multi_processor_count
        try:
            machine_info["driver"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True, text=True,
                timeout=30).stdout.strip().splitlines()[0]
        except (OSError, IndexError, subprocess.SubprocessError):
            machine_info["driver"] = "unknown"
