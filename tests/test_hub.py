"""Hub sharing without a network: the model card, the staged folder, and the calls made to the Hub.

Two stand-ins for the Hub:
- :class:`LocalHubServer`, a threaded HTTP server on 127.0.0.1 that HF_ENDPOINT points huggingface_hub at: pushes run
  through huggingface_hub's real create_repo / create_branch / create_commit code down to HTTP requests;
- :class:`FakeHub`, an in-memory Hub that ``hf_gpt2.hub.common.make_api`` returns instead of an ``HfApi`` (each call
  must bind to the real HfApi method's signature): for downloads, and for timing the background uploads.
Resuming offline from the huggingface_hub cache runs the real library with HF_HUB_OFFLINE=1.
"""

from __future__ import annotations

import base64
import fnmatch
import gzip
import hashlib
import inspect
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

import httpx2
import pytest
import yaml
from huggingface_hub import HfApi, ModelCard
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

from hf_gpt2 import cli, online
from hf_gpt2.errors import CheckpointError, RecipeError
from hf_gpt2.hub import (
    CheckpointPusher,
    HubError,
    download_checkpoint,
    parse_hub_spec,
    push_release,
    read_curves,
    stage_release,
    upload_manifest,
    write_model_card,
)
from hf_gpt2.hub import common as hub_common
from hf_gpt2.hub.card import GENERATED_MARKER

SECRET = "hf_SECRETtokenNEVERwritten0123456789"
MODEL_FILES = [
    "config.json",
    "configuration_hf_gpt2.py",
    "fused_loss.py",
    "generation_config.json",
    "model.safetensors",
    "model_fields.py",  # the field rules, imported relatively by the configuration file
    "modeling_hf_gpt2.py",
]


# ----------------------------------------------------------------------------------------------- a fake Hub


def _http_error(cls: type[HfHubHTTPError], status: int, message: str) -> HfHubHTTPError:
    response = httpx2.Response(status, request=httpx2.Request("POST", "https://hub.invalid/api"))
    return cls(message, response=response)


class FakeHub:
    """An in-memory Hub: ``repos[repo_id][branch][path] = bytes``; every API call is appended to ``calls``."""

    def __init__(self) -> None:
        self.repos: dict[str, dict[str, dict[str, bytes]]] = {}
        self.private: dict[str, bool] = {}
        self.calls: list[tuple] = []
        self.tokens: list[object] = []
        self.fail_commits = 0  # the next N commits fail after reading half their files
        self.commit_gate: threading.Event | None = None  # when set, commits wait for it (to observe the background)
        self.lock = threading.Lock()

    def api(self, token: object = None) -> FakeApi:
        self.tokens.append(token)
        return FakeApi(self)

    def branch(self, repo_id: str, revision: str | None) -> dict[str, bytes]:
        if repo_id not in self.repos:
            raise _http_error(RepositoryNotFoundError, 404, f"404 Client Error. Repository Not Found: {repo_id}")
        branches = self.repos[repo_id]
        if (revision or "main") not in branches:
            raise _http_error(RevisionNotFoundError, 404, f"404 Client Error. Revision Not Found: {revision}")
        return branches[revision or "main"]


class FakeApi:
    """Answers the HfApi methods hf_gpt2 calls; each call must also bind to the real HfApi method's signature."""

    def __init__(self, hub: FakeHub) -> None:
        self.hub = hub

    def __getattribute__(self, name: str):
        attr = object.__getattribute__(self, name)
        if name.startswith("_") or name == "hub" or not callable(attr):
            return attr

        def checked(*args, **kwargs):
            inspect.signature(getattr(HfApi, name)).bind(None, *args, **kwargs)  # TypeError if HfApi would refuse
            return attr(*args, **kwargs)

        return checked

    def whoami(self, token=None, **kw):
        self.hub.calls.append(("whoami", None, {}))
        return dict(WHOAMI)

    def create_repo(self, repo_id, *, private=None, exist_ok=False, **kw):
        self.hub.calls.append(("create_repo", repo_id, {"private": private, "exist_ok": exist_ok, **kw}))
        if repo_id.startswith("forbidden/"):
            raise _http_error(HfHubHTTPError, 403, "403 Forbidden: You don't have the rights to create a model")
        if repo_id in self.hub.repos and not exist_ok:
            raise _http_error(HfHubHTTPError, 409, "409 Conflict: repo exists")
        if repo_id not in self.hub.repos:
            self.hub.repos[repo_id] = {"main": {".gitattributes": b"*.safetensors filter=lfs\n"}}
            self.hub.private[repo_id] = bool(private)

    def create_branch(self, repo_id, *, branch, revision=None, exist_ok=False, **kw):
        self.hub.calls.append(("create_branch", repo_id, {"branch": branch, "exist_ok": exist_ok}))
        branches = self.hub.repos[repo_id]
        if branch not in branches:
            branches[branch] = dict(branches[revision or "main"])

    def create_commit(self, repo_id, operations, *, commit_message, revision=None, **kw):
        operations = list(operations)
        paths = [op.path_in_repo for op in operations]
        self.hub.calls.append(
            ("create_commit", repo_id, {"revision": revision, "message": commit_message, "paths": paths})
        )
        if self.hub.commit_gate is not None:
            assert self.hub.commit_gate.wait(20), "test gate never opened"
        target = self.hub.branch(repo_id, revision)
        staged = {}
        for index, op in enumerate(operations):
            with self.hub.lock:
                if self.hub.fail_commits and index == len(operations) // 2:
                    self.hub.fail_commits -= 1
                    raise _http_error(HfHubHTTPError, 500, "500 Server Error: connection reset during upload")
            staged[op.path_in_repo] = Path(op.path_or_fileobj).read_bytes()
        target.update(staged)  # atomic, like a Hub commit
        return type("CommitInfo", (), {"commit_url": f"https://hub.invalid/{repo_id}/commit/{len(self.hub.calls)}"})()

    def list_repo_files(self, repo_id, *, revision=None, **kw):
        self.hub.calls.append(("list_repo_files", repo_id, {"revision": revision}))
        return sorted(self.hub.branch(repo_id, revision))

    def snapshot_download(self, repo_id, *, revision=None, allow_patterns=None, cache_dir=None, **kw):
        self.hub.calls.append(("snapshot_download", repo_id, {"revision": revision, "allow_patterns": allow_patterns}))
        files = self.hub.branch(repo_id, revision)
        root = Path(cache_dir) / repo_id.replace("/", "--") / (revision or "main")
        for path, content in files.items():
            if allow_patterns is None or any(fnmatch.fnmatch(path, p) for p in allow_patterns):
                (root / path).parent.mkdir(parents=True, exist_ok=True)
                (root / path).write_bytes(content)
        return str(root)


WHOAMI = {
    "type": "user",
    "name": "user",
    "orgs": [{"name": "team", "roleInOrg": "write"}, {"name": "readers", "roleInOrg": "read"}],
    "auth": {"type": "access_token", "accessToken": {"displayName": "test", "role": "write"}},
}
"""What the Hub's whoami answers for the test token: user "user", a member of two organizations."""


class LocalHubServer:
    """The Hub's write endpoints on 127.0.0.1, enough for huggingface_hub's own create_repo, create_branch and
    create_commit code to run unchanged down to HTTP. Every file is answered as a "regular" (inline base64) upload,
    so a commit carries its files in one request and lands whole or not at all, as on the Hub.
    """

    def __init__(self) -> None:
        self.repos: dict[str, dict[str, dict[str, bytes]]] = {}
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, authorization header) of each write
        self.reads: list[tuple[str, str]] = []  # (method, path) of the reachability check and whoami
        self.fail_commits = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_HEAD(self) -> None:  # hf_gpt2.online's reachability check
                hub.reads.append(("HEAD", self.path))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:
                hub.reads.append(("GET", self.path))
                if self.path == "/api/whoami-v2":
                    if self.headers.get("Authorization") != f"Bearer {SECRET}":
                        self._reply(401, {"error": "Invalid credentials in Authorization header"})
                    else:
                        self._reply(200, WHOAMI)
                    return
                self._reply(404, {"error": f"not served by the test Hub: {self.path}"})

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                hub.requests.append(("POST", self.path, self.headers.get("Authorization")))
                self._reply(*hub.answer(unquote(self.path.split("?")[0]), body))

            def _reply(self, status: int, payload: dict, headers: dict | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                for key, value in {"Content-Type": "application/json", **(headers or {})}.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler

    def answer(self, path: str, body: bytes) -> tuple:
        if path == "/api/repos/create":
            request = json.loads(body)
            repo_id = f"{request['organization']}/{request['name']}"
            if request["organization"] == "forbidden":
                return 403, {"error": "You don't have the rights to create a model under this namespace"}
            if repo_id in self.repos:
                return 409, {"error": "You already created this model repo", "url": f"{self.url}/{repo_id}"}
            self.repos[repo_id] = {"main": {}}
            return 200, {"url": f"{self.url}/{repo_id}"}
        if path == "/api/validate-yaml":  # the Hub checks README.md's metadata before a commit
            try:
                ModelCard(json.loads(body)["content"], ignore_metadata_errors=False)
            except Exception as err:
                return 400, {"errors": [{"message": str(err)}]}
            return 200, {"warnings": []}
        parts = path.removeprefix("/api/models/").split("/")
        repo_id, action, revision = "/".join(parts[:2]), parts[2], "/".join(parts[3:])
        if repo_id not in self.repos:
            return 404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"}
        branches = self.repos[repo_id]
        if action == "branch":
            if revision in branches:
                return 409, {"error": "Reference already exists"}
            branches[revision] = dict(branches["main"])
            return 200, {}
        if revision not in branches:
            return 404, {"error": "Invalid rev id"}, {"X-Error-Code": "RevisionNotFound"}
        if action == "preupload":
            files = json.loads(body)["files"]
            return 200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]}
        if action == "commit":
            if self.fail_commits:
                self.fail_commits -= 1
                return 500, {"error": "Internal Error - We're working hard to fix this as soon as possible!"}
            lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
            files = {e["value"]["path"]: base64.b64decode(e["value"]["content"]) for e in lines if e["key"] == "file"}
            branches[revision].update(files)
            oid = hashlib.sha1(json.dumps(sorted(files)).encode()).hexdigest()
            return 200, {"commitUrl": f"{self.url}/{repo_id}/commit/{oid}", "commitOid": oid}
        return 404, {"error": f"not served by the test Hub: {path}"}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def local_hub(monkeypatch):
    """huggingface_hub pointed at :class:`LocalHubServer` through HF_ENDPOINT, with offline mode lifted for it."""
    import huggingface_hub.constants

    server = LocalHubServer()
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", SECRET)
    yield server
    server.close()


@pytest.fixture
def hub(monkeypatch) -> FakeHub:
    """The in-memory Hub, reached without a network: online, and the reachability check answered."""
    import huggingface_hub.constants

    fake = FakeHub()
    monkeypatch.setattr(hub_common, "make_api", fake.api)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(online, "require_hub_reachable", lambda purpose, alternative=None: None)
    monkeypatch.setenv("HF_TOKEN", SECRET)
    return fake


@pytest.fixture
def no_token(monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))


# ----------------------------------------------------------------------------------------------- a fake run


RECIPE = {
    "run": {"name": "brave_turing-26112800", "output_dir": "runs", "seed": 1337},
    "model": {"init": "gpt2", "n_layer": 2, "n_head": 4, "n_embd": 32},
    "tokenizer": {"name": "gpt2", "train_new": False},
    "data": {"source": "hub:Skylion007/openwebtext", "format": "text", "block_size": 64},
    "train": {"max_steps": 30, "micro_batch_size": 2, "global_batch_tokens": 4096, "lora": {"r": 0}},
    "optim": {"lr": 6e-4, "min_lr": 6e-5, "warmup_steps": 5, "schedule": "cosine", "weight_decay": 0.1},
    "hub": {"repo_id": "user/tiny-gpt2", "license": "apache-2.0", "checkpoint_revision": "checkpoints"},
}
EVAL = {  # as training writes it: val loss and counters, then run_tasks' {task: {metric: value, "n": count}}
    "val_loss": 3.2109,
    "val_perplexity": 24.8,
    "step": 30,
    "tokens_seen": 122880,
    "lambada_openai": {"acc": 0.3012, "ppl": 48.7, "n": 500.0},
    "lambada_openai_paper": {"acc": 0.41, "ppl": 39.0, "n": 500.0},
    "wikitext2": {"word_perplexity": 41.5, "token_perplexity": 30.2, "bits_per_byte": 1.21, "n": 60.0, "tokens": 9e3},
}


def _write_events(tb: Path) -> None:
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(tb))
    for step in range(1, 31):
        writer.add_scalar("train/loss", 6.0 - step * 0.08, step)
        writer.add_scalar("train/lr", 6e-4, step)
        writer.add_scalar("perf/tokens_per_s", 50_000.0 if step > 1 else 10.0, step)
        writer.add_scalar("perf/mfu", 0.4, step)
        if step % 10 == 0:
            writer.add_scalar("val/loss", 5.0 - step * 0.05, step)
    writer.close()


@pytest.fixture
def run_dir(tmp_path, tiny_model) -> Path:
    run = tmp_path / "runs" / "brave_turing-26112800"
    tiny_model.save_pretrained(run / "final")
    for folder in (run, run / "final"):
        (folder / "recipe.yaml").write_text(yaml.safe_dump(RECIPE, sort_keys=False))
    (run / "eval.json").write_text(json.dumps(EVAL))
    _write_events(run / "tb")
    step = run / "checkpoints" / "step-30"
    step.mkdir(parents=True)
    (step / "train_state.json").write_text(json.dumps({"step": 30, "tokens_seen": 122880, "num_processes": 1}))
    (step / "model.safetensors").write_bytes(b"weights" * 100)
    return run


def _digests(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in folder.rglob("*")
        if p.is_file()
    }


# ----------------------------------------------------------------------------------------------- the card


def test_card_metadata_parses_and_reports_the_run(run_dir):
    card_path = write_model_card(run_dir / "final", run_dir)
    card = ModelCard.load(card_path)
    data = card.data
    assert data.library_name == "transformers" and data.pipeline_tag == "text-generation"
    assert data.license == "apache-2.0"
    assert {"hf_gpt2", "gpt2"} <= set(data.tags)
    assert data.datasets == ["Skylion007/openwebtext"]
    assert data.base_model == "openai-community/gpt2"  # model.init "gpt2" → its canonical Hub id
    assert data.model_name == "user/tiny-gpt2"
    results = {
        (r.dataset_type, r.metric_type): r.metric_value for r in data.eval_results if "paper" not in r.metric_name
    }
    assert results == {
        ("Skylion007/openwebtext", "loss"): 3.2109,
        ("EleutherAI/lambada_openai", "acc"): 0.3012,
        ("EleutherAI/lambada_openai", "ppl"): 48.7,
        ("Salesforce/wikitext", "word_perplexity"): 41.5,
        ("Salesforce/wikitext", "token_perplexity"): 30.2,
        ("Salesforce/wikitext", "bits_per_byte"): 1.21,
    }
    assert len(data.eval_results) == 8  # val loss + 2 + 2 + 3 (counts such as n and tokens are left out)
    text = card.text
    assert "| tokens seen | 122.88k |" in text
    assert "| optimizer steps | 30 |" in text and "| batch | 4,096 tokens per optimizer step |" in text
    assert "| throughput | 50.00k tokens/s (median), MFU 40.0% |" in text
    assert "| tokenizer | OpenAI's GPT-2 BPE (50,257 tokens) |" in text
    assert "| final train loss | 3.6 |" in text and "| final validation loss | 3.211 |" in text
    # fractions shown in %, beside GPT-2 124M's numbers from hf_gpt2.evaluation's tables
    assert "| lambada_openai | acc (%) | 30.12 | — | 32.56 | 500 |" in text
    assert "| lambada_openai_paper | acc (%) | 41.00 | 45.99 | — | 500 |" in text
    assert "| wikitext2 | word_perplexity | 41.5 | 29.41 | — | 60 |" in text
    assert "| validation | loss | 3.211 | — | 3.12 | — |" in text  # OpenWebText: nanoGPT's 124M number
    assert "![Training and validation loss](loss_curves.png)" in text
    assert 'from_pretrained("user/tiny-gpt2", trust_remote_code=True)' in text
    assert "import hf_gpt2" in text and "hf-gpt2 convert --to-gpt2 user/tiny-gpt2 ./gpt2-copy" in text
    assert "learning_rate" not in text and "lr: 0.0006" in text  # the resolved recipe, verbatim


def test_card_ships_curves_recipe_and_eval_and_the_push_ships_the_events(run_dir):
    release = run_dir / "final"
    write_model_card(release, run_dir)
    assert (release / "loss_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((release / "eval.json").read_text()) == EVAL
    assert yaml.safe_load((release / "recipe.yaml").read_text()) == RECIPE
    assert not (release / "runs").exists()  # no second copy of the events under runs/<name>/
    events = {name: path for name, path in upload_manifest(release, run_dir).items() if name.startswith("runs/")}
    assert events and all(path.parent == run_dir / "tb" for path in events.values())
    assert read_curves(run_dir / "tb").series["train/loss"][-1] == (30, pytest.approx(6.0 - 30 * 0.08))
    assert "the TensorBoard events are in `runs/`" in (release / "README.md").read_text()


def _tensorboard_runs(logdir: Path) -> list[str]:
    """The runs TensorBoard lists for ``tensorboard --logdir logdir`` (its own directory walk and loader)."""
    from tensorboard.backend.event_processing.plugin_event_multiplexer import EventMultiplexer

    return sorted(EventMultiplexer().AddRunsFromDirectory(str(logdir)).Runs())


def test_tensorboard_shows_each_run_once_and_the_hub_still_gets_its_events(hub, run_dir):
    write_model_card(run_dir / "final", run_dir)
    push_release(run_dir / "final", RECIPE["hub"], run_dir=run_dir)
    assert _tensorboard_runs(run_dir.parent) == ["brave_turing-26112800/tb"]
    pushed = hub.repos["user/tiny-gpt2"]["main"]
    (event_name,) = [name for name in pushed if name.startswith("runs/events.out.tfevents.")]
    assert pushed[event_name] == (run_dir / "tb" / event_name.removeprefix("runs/")).read_bytes()


def test_an_old_copy_of_the_events_in_the_release_is_not_pushed_twice(hub, run_dir, caplog):
    from hf_gpt2.hub.card import run_events

    old_copy = run_dir / "final" / "runs"
    old_copy.mkdir()
    for path in (run_dir / "tb").iterdir():  # what older releases held
        (old_copy / path.name).write_bytes(path.read_bytes())
    assert len(_tensorboard_runs(run_dir.parent)) == 2
    with caplog.at_level(logging.WARNING, logger="hf_gpt2.hub"):
        files = upload_manifest(run_dir / "final", run_dir)
    assert f"{old_copy} is an old copy of the run's TensorBoard events" in caplog.text
    assert [path for name, path in files.items() if name.startswith("runs/")] == list(
        run_events(run_dir / "final", run_dir).values()
    )
    assert all(path.parent == run_dir / "tb" for path in run_events(run_dir / "final", run_dir).values())
    assert run_events(run_dir / "final") == {f"runs/{p.name}": p for p in old_copy.iterdir()}  # a release on its own


def test_card_shows_ptb_and_1bw_with_their_datasets_and_the_papers_numbers(run_dir):
    results = {
        "ptb": {"word_perplexity": 80.12, "token_perplexity": 50.2, "bits_per_byte": 1.31, "n": 3761.0, "tokens": 9e4},
        "lm1b": {"word_perplexity": 90.34, "token_perplexity": 60.1, "bits_per_byte": 1.4, "n": 306688.0},
    }  # fmt: skip
    card = ModelCard.load(write_model_card(run_dir / "final", run_dir, eval_results=results))
    index = {
        (r.dataset_type, r.dataset_config, r.dataset_split, r.metric_type): r.metric_value
        for r in card.data.eval_results
    }
    assert index == {
        ("ptb-text-only/ptb_text_only", "penn_treebank", "test", "word_perplexity"): 80.12,
        ("ptb-text-only/ptb_text_only", "penn_treebank", "test", "token_perplexity"): 50.2,
        ("ptb-text-only/ptb_text_only", "penn_treebank", "test", "bits_per_byte"): 1.31,
        ("billion-word-benchmark/lm1b", "plain_text", "test", "word_perplexity"): 90.34,
        ("billion-word-benchmark/lm1b", "plain_text", "test", "token_perplexity"): 60.1,
    }
    assert any("One Billion Word" in r.dataset_name for r in card.data.eval_results)
    assert "| ptb | word_perplexity | 80.12 | 65.85 | — | 3,761 |" in card.text
    assert "| lm1b | word_perplexity | 90.34 | 75.2 | — | 306,688 |" in card.text


def test_card_for_a_scratch_run_without_eval_or_events(tmp_path, tiny_model):
    release = tmp_path / "final"
    tiny_model.save_pretrained(release)
    recipe = {**RECIPE, "model": {"init": "scratch"}, "data": {"source": "kjv"}, "hub": {}}
    (release / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    card = ModelCard.load(write_model_card(release))
    assert card.data.base_model is None and card.data.datasets is None and card.data.eval_results is None
    assert card.data.license == "mit"
    assert "trained from scratch" in card.text and "No evaluation results were recorded" in card.text
    assert not (release / "loss_curves.png").exists() and "USER/MODEL" in card.text


def test_staged_folder_is_exactly_the_release(run_dir):
    release = run_dir / "final"
    (release / ".DS_Store").write_text("junk")
    (release / ".final.tmp").mkdir()
    (release / ".final.tmp" / "half.bin").write_text("junk")
    files = stage_release(release, run_dir)
    event_file = next(f for f in files if f.startswith("runs/"))
    assert list(files) == sorted(
        MODEL_FILES + ["README.md", "eval.json", "loss_curves.png", "recipe.yaml", event_file]
    )
    assert event_file.startswith("runs/events.out.tfevents.") and files[event_file].parent == run_dir / "tb"
    assert all(files[name] == release / name for name in files if name != event_file)
    assert upload_manifest(release, run_dir) == files
    assert list(upload_manifest(release)) == [name for name in files if name != event_file]


# ----------------------------------------------------------------------------------------------- pushing


def test_push_release_is_one_commit_of_the_staged_files(hub, run_dir, caplog):
    release = run_dir / "final"
    files = stage_release(release, run_dir)
    caplog.set_level(logging.DEBUG)
    url = push_release(release, RECIPE["hub"] | {"private": True}, commit_message="release v1", run_dir=run_dir)
    assert url.startswith("https://hub.invalid/user/tiny-gpt2/commit/")
    assert [call[0] for call in hub.calls] == ["whoami", "create_repo", "create_commit"]  # access checked first
    assert hub.calls[1][2] == {"private": True, "exist_ok": True}
    assert hub.calls[2][2] == {"revision": None, "message": "release v1", "paths": list(files)}
    assert set(hub.repos["user/tiny-gpt2"]["main"]) == set(files) | {".gitattributes"}
    assert set(hub.tokens) == {SECRET}  # the token reaches the client, and nowhere else:
    assert SECRET not in caplog.text
    assert all(SECRET.encode() not in p.read_bytes() for p in run_dir.rglob("*") if p.is_file())


def test_push_release_to_a_branch_creates_it(hub, run_dir):
    push_release(run_dir / "final", {"repo_id": "user/tiny-gpt2"}, revision="v1")
    assert ("create_branch", "user/tiny-gpt2", {"branch": "v1", "exist_ok": True}) in hub.calls
    assert "model.safetensors" in hub.repos["user/tiny-gpt2"]["v1"]


def test_push_without_a_token_says_how_to_log_in(hub, no_token, run_dir):
    with pytest.raises(HubError) as err:
        push_release(run_dir / "final", RECIPE["hub"])
    assert "hf auth login" in str(err.value) and "huggingface-cli login" in str(err.value)
    assert "HF_TOKEN" in str(err.value)
    assert hub.calls == []
    with pytest.raises(HubError, match="HF_TOKEN"):
        CheckpointPusher(RECIPE["hub"])


def test_push_without_repo_id_or_to_a_forbidden_namespace(hub, run_dir):
    with pytest.raises(RecipeError, match="hub.repo_id is not set"):
        push_release(run_dir / "final", {"repo_id": None})
    with pytest.raises(RecipeError, match="USER/NAME"):
        push_release(run_dir / "final", {"repo_id": "no-namespace"})
    with pytest.raises(HubError, match="no write access"):
        push_release(run_dir / "final", {"repo_id": "forbidden/model"})


def test_upload_failing_halfway_keeps_the_release_and_the_next_push_retries(hub, run_dir):
    release = run_dir / "final"
    stage_release(release, run_dir)
    before = _digests(release)
    hub.fail_commits = 1
    with pytest.raises(HubError, match="run the same push again"):
        push_release(release, RECIPE["hub"])
    assert _digests(release) == before  # the local release is untouched
    assert set(hub.repos["user/tiny-gpt2"]["main"]) == {".gitattributes"}  # nothing half-committed
    push_release(release, RECIPE["hub"])
    assert {
        k: hashlib.sha256(v).hexdigest()
        for k, v in hub.repos["user/tiny-gpt2"]["main"].items()
        if k != ".gitattributes"
    } == before
    assert [c[0] for c in hub.calls].count("create_commit") == 2


# ----------------------------------------------------------------------------------------------- checkpoints


def _checkpoint(root: Path, step: int) -> Path:
    folder = root / "checkpoints" / f"step-{step}"
    folder.mkdir(parents=True)
    (folder / "train_state.json").write_text(json.dumps({"step": step}))
    (folder / "model.safetensors").write_bytes(bytes([step % 256]) * 1000)
    return folder


def test_checkpoint_pusher_uploads_in_the_background(hub, tmp_path):
    hub.commit_gate = threading.Event()
    with CheckpointPusher(RECIPE["hub"], retry_wait_s=0) as pusher:
        pusher.submit(_checkpoint(tmp_path, 10), 10)  # the worker takes it and waits at the gate
        for _ in range(200):
            if any(c[0] == "create_commit" for c in hub.calls):
                break
            threading.Event().wait(0.01)
        step20, step30 = _checkpoint(tmp_path, 20), _checkpoint(tmp_path, 30)
        pusher.submit(step20, 20)  # waits behind step 10 ...
        pusher.submit(step30, 30)  # ... and is superseded by 30 before it starts
        import shutil

        shutil.rmtree(step30)  # training rotates the checkpoint away: the staged links still upload
        assert pusher.pushed == []  # submit() returned while step 10 is still uploading
        hub.commit_gate.set()
    assert pusher.pushed == [10, 30] and pusher.skipped == [20] and pusher.failures == []
    branch = hub.repos["user/tiny-gpt2"]["checkpoints"]
    assert branch["checkpoints/step-30/model.safetensors"] == bytes([30]) * 1000
    assert "checkpoints/step-20/train_state.json" not in branch
    assert ("create_branch", "user/tiny-gpt2", {"branch": "checkpoints", "exist_ok": True}) in hub.calls
    assert "model.safetensors" not in hub.repos["user/tiny-gpt2"]["main"]  # main stays for releases
    assert not list((tmp_path / "checkpoints").glob(".hub-push-*"))  # staging cleaned up


def test_checkpoint_pusher_retries_then_reports_failures(hub, tmp_path, caplog):
    hub.fail_commits = 10
    pusher = CheckpointPusher(RECIPE["hub"], retries=1, retry_wait_s=0)
    folder = _checkpoint(tmp_path, 10)
    pusher.submit(folder, 10)
    with caplog.at_level(logging.WARNING, logger="hf_gpt2.hub"):
        failures = pusher.close()
    assert [f.step for f in failures] == [10] and "500 Server Error" in failures[0].error
    assert [c[0] for c in hub.calls].count("create_commit") == 2  # first try + one retry
    assert "checkpoint step 10 was NOT pushed" in caplog.text and SECRET not in caplog.text
    assert (folder / "model.safetensors").is_file()


# ----------------------------------------------------------------------------------------------- resuming


def test_download_checkpoint_pulls_the_newest_step(hub, tmp_path, monkeypatch):
    with CheckpointPusher(RECIPE["hub"]) as pusher:
        pusher.submit(_checkpoint(tmp_path / "a", 10), 10)
    with CheckpointPusher(RECIPE["hub"]) as pusher:
        pusher.submit(_checkpoint(tmp_path / "b", 200), 200)
    folder = download_checkpoint("hub:user/tiny-gpt2", cache_dir=tmp_path / "cache")
    assert folder.name == "step-200" and folder.parent.name == "checkpoints"
    assert json.loads((folder / "train_state.json").read_text()) == {"step": 200}
    assert hub.calls[-1] == (
        "snapshot_download",
        "user/tiny-gpt2",
        {"revision": "checkpoints", "allow_patterns": ["checkpoints/step-200/*"]},
    )


def test_a_pushed_then_downloaded_checkpoint_passes_trainings_manifest_check(hub, tmp_path):
    from hf_gpt2.training.checkpointing import verify_checkpoint, write_manifest
    from hf_gpt2.training.state import TrainState

    folder = _checkpoint(tmp_path, 40)
    (folder / "optimizer.bin").write_bytes(b"adam" * 300)
    write_manifest(folder)
    with CheckpointPusher(RECIPE["hub"]) as pusher:
        pusher.submit(folder, 40)
    downloaded = download_checkpoint("hub:user/tiny-gpt2@checkpoints", cache_dir=tmp_path / "cache")
    assert verify_checkpoint(downloaded) == TrainState(step=40)


def test_download_checkpoint_errors_name_the_repo_and_revision(hub, run_dir):
    with pytest.raises(CheckpointError, match="nobody/missing not found"):
        download_checkpoint("hub:nobody/missing")
    push_release(run_dir / "final", RECIPE["hub"])
    with pytest.raises(CheckpointError, match="no revision 'nope'"):
        download_checkpoint("hub:user/tiny-gpt2@nope")
    with pytest.raises(CheckpointError, match="holds no checkpoints/step-N"):
        download_checkpoint("hub:user/tiny-gpt2@main")


def test_parse_hub_spec():
    assert parse_hub_spec("hub:user/model") == ("user/model", "checkpoints")
    assert parse_hub_spec("hub:user/model@run-2") == ("user/model", "run-2")
    for bad in ("user/model", "hub:model", "hub:user/model@", "hub:"):
        with pytest.raises(CheckpointError, match="hub:USER/NAME"):
            parse_hub_spec(bad)


# ----------------------------------------------------------------------------------------------- the command


def test_push_command_writes_the_card_and_pushes_a_run_folder(hub, run_dir, capsys):
    write_model_card(run_dir / "final", run_dir)  # as training does: the card names the recipe's repo
    assert cli.main(["push", "--model", str(run_dir), "--repo-id", "user/other", "--private"]) == 0
    card = ModelCard.load(run_dir / "final" / "README.md")
    assert card.data.model_name == "user/other" and "| tokens seen | 122.88k |" in card.text
    assert 'from_pretrained("user/other"' in card.text and "user/tiny-gpt2" not in card.text.split("```yaml")[0]
    assert hub.private["user/other"] is True
    assert "README.md" in hub.repos["user/other"]["main"]
    assert any(name.startswith("runs/events.out.tfevents.") for name in hub.repos["user/other"]["main"])
    capsys.readouterr()
    assert cli.main(["push", "--model", str(run_dir / "nothing"), "--repo-id", "user/other"]) == 2  # while parsing
    assert "nothing' does not exist" in capsys.readouterr().err
    (run_dir / "empty").mkdir()
    assert cli.main(["push", "--model", str(run_dir / "empty"), "--repo-id", "user/other"]) == 2
    assert "neither a model folder" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------- over HTTP


def test_push_release_over_http_is_one_authenticated_commit(local_hub, run_dir, caplog):
    release = run_dir / "final"
    files = stage_release(release, run_dir)
    caplog.set_level(logging.DEBUG)
    url = push_release(release, RECIPE["hub"], commit_message="release v1", run_dir=run_dir)
    assert url.startswith(f"{local_hub.url}/user/tiny-gpt2/commit/")
    assert [(m, p) for m, p, _ in local_hub.requests] == [
        ("POST", "/api/repos/create"),
        ("POST", "/api/validate-yaml"),
        ("POST", "/api/models/user/tiny-gpt2/preupload/main"),
        ("POST", "/api/models/user/tiny-gpt2/commit/main"),
    ]
    assert {auth for _, _, auth in local_hub.requests} == {f"Bearer {SECRET}"}
    assert local_hub.repos["user/tiny-gpt2"]["main"] == {name: path.read_bytes() for name, path in files.items()}
    assert SECRET not in caplog.text


def test_upload_failing_halfway_over_http(local_hub, run_dir):
    release = run_dir / "final"
    stage_release(release, run_dir)
    before = _digests(release)
    local_hub.fail_commits = 1  # the files were announced (preupload), then the commit fails
    with pytest.raises(HubError, match="nothing was committed") as err:
        push_release(release, RECIPE["hub"])
    assert "hf-gpt2 push --model" in str(err.value) and SECRET not in str(err.value)
    assert local_hub.repos["user/tiny-gpt2"]["main"] == {} and _digests(release) == before
    push_release(release, RECIPE["hub"])  # the repo exists now (409 → kept); the retry commits everything
    assert len(local_hub.repos["user/tiny-gpt2"]["main"]) == len(before)


def test_checkpoints_over_http_go_to_their_branch(local_hub, tmp_path):
    with CheckpointPusher(RECIPE["hub"], retry_wait_s=0) as pusher:
        pusher.submit(_checkpoint(tmp_path, 10), 10)
    assert pusher.pushed == [10]
    assert [p for _, p, _ in local_hub.requests] == [
        "/api/repos/create",
        "/api/models/user/tiny-gpt2/branch/checkpoints",
        "/api/models/user/tiny-gpt2/preupload/checkpoints",
        "/api/models/user/tiny-gpt2/commit/checkpoints",
    ]
    assert sorted(local_hub.repos["user/tiny-gpt2"]["checkpoints"]) == [
        "checkpoints/step-10/model.safetensors",
        "checkpoints/step-10/train_state.json",
    ]


def test_forbidden_namespace_over_http(local_hub, run_dir, tmp_path, caplog, monkeypatch):
    before = _digests(run_dir)
    with pytest.raises(HubError, match="no write access to the namespace 'forbidden'"):
        push_release(run_dir / "final", {"repo_id": "forbidden/model"})
    with pytest.raises(HubError, match="no write access to the namespace 'forbidden'"):  # before training starts
        CheckpointPusher({"repo_id": "forbidden/model"}, retries=0)
    assert local_hub.requests == [] and _digests(run_dir) == before  # nothing asked of the Hub, nothing written
    # a namespace the token may write to, but the Hub refuses (say, a revoked membership): logged, training goes on
    with caplog.at_level(logging.WARNING, logger="hf_gpt2.hub"):
        monkeypatch.setitem(WHOAMI, "orgs", [{"name": "forbidden", "roleInOrg": "write"}])
        pusher = CheckpointPusher({"repo_id": "forbidden/model"}, retries=0)
        pusher.submit(_checkpoint(tmp_path, 10), 10)
        failures = pusher.close()
    assert "preparing forbidden/model failed: your token is invalid or has no write access" in caplog.text
    assert [f.step for f in failures] == [10] and "403" in failures[0].error
    assert "checkpoint step 10 was NOT pushed" in caplog.text


# ----------------------------------------------------------------------------------------------- real library, offline


def test_push_with_hub_offline_names_the_setting(run_dir, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", SECRET)  # HF_HUB_OFFLINE=1 comes from conftest; the real HfApi refuses
    with pytest.raises(HubError, match="HF_HUB_OFFLINE=1 is set; unset it to push"):
        push_release(run_dir / "final", RECIPE["hub"])


def test_resume_offline_uses_the_huggingface_hub_cache(tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(CheckpointError, match="not in the cache"):
        download_checkpoint("hub:user/tiny-gpt2", cache_dir=cache)
    repo, sha = cache / "models--user--tiny-gpt2", "a" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "checkpoints").write_text(sha)
    for step in (5, 12):
        state = repo / "snapshots" / sha / "checkpoints" / f"step-{step}" / "train_state.json"
        state.parent.mkdir(parents=True)
        state.write_text(json.dumps({"step": step}))
    folder = download_checkpoint("hub:user/tiny-gpt2", cache_dir=cache)
    assert folder == repo / "snapshots" / sha / "checkpoints" / "step-12"


def test_push_command_keeps_a_hand_edited_card(hub, run_dir):
    release = run_dir / "final"
    write_model_card(release, run_dir)
    card = release / "README.md"
    card.write_text(card.read_text().replace(GENERATED_MARKER, "My own words."))
    assert cli.main(["push", "--model", str(release), "--repo-id", "user/other"]) == 0
    assert "My own words." in card.read_text()
    assert hub.repos["user/other"]["main"]["README.md"] == card.read_bytes()
