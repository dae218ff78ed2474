#!/usr/bin/env python3
"""Tests of check_layers.py: the real tree passes, and each planted violation fails it."""
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
SCRIPT = os.path.join(HERE, "check_layers.py")


def run(root):
    p = subprocess.run([sys.executable, SCRIPT, "--root", root], capture_output=True, text=True)
    return p.returncode, p.stdout + p.stderr


class RealTree(unittest.TestCase):
    def test_repository_keeps_its_layers(self):
        rc, out = run(REPO)
        self.assertEqual(rc, 0, out)


class PlantedViolations(unittest.TestCase):
    """A small tree with the project's real rule table, then one bad include at a time."""

    def setUp(self):
        self.root = tempfile.mkdtemp(prefix="ktl-layers-")
        os.makedirs(os.path.join(self.root, "docs"))
        shutil.copy(os.path.join(REPO, "docs", "architecture.md"), os.path.join(self.root, "docs"))
        for rel in ["core/base/file_util.h", "core/scheduling/scheduler.h", "core/model/model.h",
                    "core/model/model_config.h", "core/engine/engine.h", "core/engine/llm_engine.h",
                    "jobs/job_store.h", "server/http_server.h", "cli/command.h"]:
            self.write(rel, "#pragma once\n")
        self.write("core/engine/llm_engine.h",
                   '#pragma once\n#include <torch/torch.h>\n#include "core/model/model.h"\n'
                   '#include "core/scheduling/scheduler.h"\n')
        self.write("server/http_server.h", '#pragma once\n#include "core/engine/engine.h"\n'
                   '#include "jobs/job_store.h"\n')

    def tearDown(self):
        shutil.rmtree(self.root)

    def write(self, rel, text):
        path = os.path.join(self.root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)

    def assert_fails(self, needle):
        rc, out = run(self.root)
        self.assertEqual(rc, 1, out)
        self.assertIn(needle, out)

    def test_clean_small_tree_passes(self):
        rc, out = run(self.root)
        self.assertEqual(rc, 0, out)

    def test_core_including_server_fails(self):
        self.write("core/base/file_util.h", '#pragma once\n#include "server/http_server.h"\n')
        self.assert_fails("layer 'base' may not include 'server'")

    def test_core_including_jobs_fails(self):
        self.write("core/model/model.h", '#include "jobs/job_store.h"\n')
        self.assert_fails("layer 'model' may not include 'jobs'")

    def test_jobs_including_server_fails(self):
        self.write("jobs/job_store.h", '#include "server/http_server.h"\n')
        self.assert_fails("layer 'jobs' may not include 'server'")

    def test_lower_core_layer_including_higher_fails(self):
        self.write("core/model/model.h", '#include "core/engine/llm_engine.h"\n')
        self.assert_fails("layer 'model' may not include 'engine'")

    def test_scheduling_including_libtorch_fails(self):
        self.write("core/scheduling/scheduler.h", "#pragma once\n#include <ATen/ATen.h>\n")
        self.assert_fails("layer 'scheduling' must not include LibTorch")

    def test_torch_free_file_in_a_torch_folder_is_checked(self):
        self.write("core/model/model_config.h", "#include <torch/types.h>\n")
        self.assert_fails("layer 'model-config' must not include LibTorch")

    def test_server_reaching_past_the_engine_interface_fails(self):
        self.write("server/http_server.h", '#include "core/engine/llm_engine.h"\n')
        self.assert_fails("layer 'server' may not include 'engine'")

    def test_file_outside_every_layer_fails(self):
        self.write("core/stray.cpp", "int x;\n")
        self.assert_fails("core/stray.cpp: belongs to no layer")

    def test_cli_may_include_everything(self):
        self.write("cli/command.h", '#include "core/engine/llm_engine.h"\n#include "server/http_server.h"\n')
        rc, out = run(self.root)
        self.assertEqual(rc, 0, out)

    def test_broken_table_is_reported(self):
        doc = os.path.join(self.root, "docs", "architecture.md")
        with open(doc) as f:
            text = f.read()
        # base may include data, which includes base: a cycle.
        text = text.replace("| base | `core/base/` | — | no |", "| base | `core/base/` | data | no |")
        with open(doc, "w") as f:
            f.write(text)
        rc, out = run(self.root)
        self.assertEqual(rc, 2, out)
        self.assertIn("cycle", out)

    def test_torch_free_layer_allowed_a_torch_layer_is_reported(self):
        doc = os.path.join(self.root, "docs", "architecture.md")
        with open(doc) as f:
            text = f.read()
        text = text.replace("| jobs | `jobs/` | base, train-config, lora-config | no |",
                            "| jobs | `jobs/` | base, train-config, lora-config, model | no |")
        with open(doc, "w") as f:
            f.write(text)
        rc, out = run(self.root)
        self.assertEqual(rc, 2, out)
        self.assertIn("LibTorch-free layer 'jobs'", out)


if __name__ == "__main__":
    unittest.main(verbosity=2)
