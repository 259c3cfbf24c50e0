"""One rank of a multi-process training test: ``python dist_train_worker.py CONFIG [CONFIG ...]``.

The test sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT (a tcp rendezvous on a free port) as
the deepspeed launcher does; every config is trained in turn in the same process group."""
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from fastclap.engine.distributed import shutdown_distributed  # noqa: E402
from fastclap.train import main  # noqa: E402

if __name__ == "__main__":
    for path in sys.argv[1:]:
        main(["--config", path])
    shutdown_distributed()
