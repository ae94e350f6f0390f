"""The managed (lifecycle) variant of `uda_segmentation`: the same parameters and topics,
driven through the standard lifecycle services.

    segmentation_lifecycle_node --ros-args -p model_path:=runs/best.pt
    ros2 lifecycle set /uda_segmentation configure   # load + warm the model, publishers
    ros2 lifecycle set /uda_segmentation activate    # subscribe; masks are published
    ros2 lifecycle set /uda_segmentation deactivate  # frames counted (inactive), not processed
    ros2 lifecycle set /uda_segmentation cleanup     # model freed, topics destroyed
    ros2 lifecycle set /uda_segmentation shutdown    # from any state -> finalized

Built on `rclpy.lifecycle.LifecycleNode` (`~/change_state`, `~/get_state`,
`~/get_available_states`, `~/get_available_transitions`); the three outputs are managed
publishers, silent unless active; /diagnostics keeps reporting while inactive, so frames
that arrive then show as `frames_inactive`. A configure that fails (a bad parameter,
a broken model file) says why in one line and leaves the node unconfigured. The node
stays in `finalized` after shutdown until SIGINT / SIGTERM, which end the process with
exit 0 and the summary from any state, as the plain node does.
"""
from __future__ import annotations

import sys
from typing import Any

from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from uda_seg_ros.parameters import NODE_NAME, declare_parameters, read_settings
from uda_seg_ros.process import run_node
from uda_seg_ros.segmentation_node import on_set_parameters
from uda_seg_ros.serving import SegmentationServer


class SegmentationLifecycleNode(LifecycleNode):
    """Parameters declared at once; the model only on configure (see the module docstring)."""

    def __init__(self, **kwargs: Any):
        super().__init__(NODE_NAME, **kwargs)
        declare_parameters(self)
        self.config: dict[str, Any] = {}
        self.add_on_set_parameters_callback(lambda params: on_set_parameters(self.config,
                                                                             params))
        self.server = SegmentationServer(self, managed=True)
        self.get_logger().info("unconfigured: waiting for the configure transition "
                               f"(ros2 lifecycle set {self.get_fully_qualified_name()} "
                               f"configure)")

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self.config.clear()
            self.config.update(read_settings(self))
            self.server.configure(self.config)
        except Exception as exc:  # noqa: BLE001 - a failed transition says why in one line
            self.get_logger().error(f"configure failed: {type(exc).__name__}: {exc}")
            self.server.cleanup()
            return TransitionCallbackReturn.FAILURE
        self.get_logger().info("configured: model loaded and warmed up; activate to serve")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = super().on_activate(state)  # the managed publishers
        self.server.activate()
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.server.deactivate()
        self.get_logger().info("inactive: frames are counted, not processed")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.server.cleanup()
        self.get_logger().info("unconfigured: model freed")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.server.deactivate()
        self.server.cleanup()
        self.get_logger().info(f"finalized (from {state.label})")
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.server.cleanup()
        return TransitionCallbackReturn.SUCCESS

    def close(self) -> None:
        """Stop the worker, then log the summary (and write stats_file), in any state."""
        self.server.close()


def main(args: list[str] | None = None) -> int:
    """Console script `segmentation_lifecycle_node`; exit status as `segmentation_node`."""
    return run_node(lambda: SegmentationLifecycleNode(), NODE_NAME, args)


if __name__ == "__main__":
    sys.exit(main())
