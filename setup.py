"""pip package for flash_rt (the engine) and flash_rt_ros (the ROS 2 node).

The ROS interfaces (msg/, srv/) are built separately with cmake (scripts/build_interfaces.sh) because
rosidl needs generated C type support; in a colcon workspace CMakeLists.txt does both.
"""
from setuptools import find_packages, setup

setup(
    name="flash_rt",
    version="0.1.0",
    description="Realtime inference engine for VLA robot policies (Pi0.5) + its ROS 2 node",
    packages=find_packages(include=["flash_rt", "flash_rt.*", "flash_rt_ros", "flash_rt_ros.*"]),
    package_data={"flash_rt": ["configs/*.yaml"]},
    python_requires=">=3.10",
    install_requires=["torch", "numpy", "safetensors", "sentencepiece", "opencv-python-headless", "PyYAML"],
    # openpi JAX/Orbax checkpoints: "orbax" reads them (tensorstore, no JAX); "orbax-write" also writes them as openpi
    # does (tests, benchmarks). Pins as in requirements-orbax.txt.
    extras_require={
        "orbax": ["tensorstore==0.1.86", "ml_dtypes==0.7.0"],
        "orbax-write": ["tensorstore==0.1.86", "ml_dtypes==0.7.0", "orbax-checkpoint==0.12.8", "jax==0.10.2",
                        "jaxlib==0.10.2"],
    },
    entry_points={
        "console_scripts": [
            "flash-rt-demo=flash_rt_ros.demo:main",
            "flash-rt-node=flash_rt_ros.main:main",
            "flash-rt-ros-demo=flash_rt_ros.demo:main",
            "flash-rt-synthetic-sensors=flash_rt_ros.synthetic_sensors:main",
            "flash-rt-bag=flash_rt_ros.bag.cli:main",
        ],
    },
)
