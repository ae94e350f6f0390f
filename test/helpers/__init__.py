"""What the tests share besides conftest.py's fixtures (importable as `helpers.<module>`):

- `fixtures`: tiny data in the real formats (one CamVid writer, IDDA, the two tiny
  domains) and the tiny run settings (`tiny_overrides` / `tiny_config`);
- `ros`: a ROS 2 client in this process and node processes (`RosClient`, `NodeProcess`,
  `ros_env`, `wait_for`);
- `launching`: the upstream launch tooling installed for a test session, launches in their
  own process group;
- scripts run as child processes by path: `resume_probe.py` (a training run that kills
  itself), `launch_service_probe.py` (a launch file under a plain LaunchService).
"""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository
