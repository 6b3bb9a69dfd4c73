"""The worker client the edge's configuration names (``[worker] kind``)."""

from __future__ import annotations

from edge.config import EdgeConfigError, EdgeSettings
from edge.workers.base import WorkerClient
from edge.workers.http_api import HttpWorker
from edge.workers.modal import ModalWorker
from edge.workers.runpod import RunPodWorker


def build_worker_client(settings: EdgeSettings) -> WorkerClient:
    worker, secrets = settings.config.worker, settings.secrets
    url, timeout_s, retries = worker.base_url(), worker.timeout_s, worker.retries
    if worker.kind == "runpod":
        if secrets.worker_key is None:
            raise EdgeConfigError("worker: kind runpod needs api_key_env (the RunPod API key)")
        return RunPodWorker(
            url,
            api_key=secrets.worker_key,
            timeout_s=timeout_s,
            retries=retries,
            webhook_url=worker.webhook_url,
        )
    if worker.kind == "modal":
        return ModalWorker(url, token=secrets.modal_token, timeout_s=timeout_s, retries=retries)
    return HttpWorker(url, timeout_s=timeout_s, retries=retries)
