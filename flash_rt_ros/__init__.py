"""flash_rt_ros: the ROS 2 node for flash_rt (Pi0.5 action chunks from camera + joint-state topics).

The rosidl-generated interfaces (``flash_rt_ros.msg``, ``flash_rt_ros.srv``) share this package name. In a colcon
install they sit in the same directory as these sources; on the pip route (scripts/build_interfaces.sh) they live
in a separate site-packages directory on sys.path, and ``extend_path`` makes them importable from here.
"""
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
