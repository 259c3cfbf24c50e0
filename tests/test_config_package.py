"""The config package stands apart: importing it loads neither torch nor numpy nor another fastclap layer."""
import json
import subprocess
import sys


def test_import_fastclap_config_loads_no_torch_and_no_other_layer():
    code = ("import sys, json, fastclap.config; "
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'numpy', 'deepspeed', "
            "'triton', 'transformers') or m.startswith('fastclap.'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = json.loads(out.strip().splitlines()[-1])
    assert all(m.startswith("fastclap.config") for m in loaded), loaded
    assert "fastclap.config.schema" in loaded  # the probe sees the package's own modules


def test_prompt_check_is_the_config_check():
    """evaluation.prompts uses the config package's template check (one check, one place)."""
    from fastclap.config import check_templates
    from fastclap.evaluation import prompts

    assert prompts.check_templates is check_templates
