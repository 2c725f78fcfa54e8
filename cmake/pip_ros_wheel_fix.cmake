# pip_ros_wheel_fix.cmake -- ONLY for building against the ROS 2 pip wheels (ros-* on PyPI).
#
# Injected with -DCMAKE_PROJECT_INCLUDE=<this file> by scripts/build_interfaces.sh; never included by
# CMakeLists.txt, so a colcon build on a real ROS 2 install (Jazzy/Kilted from apt or source) is unaffected.
#
# Problem: the wheels' exported targets <pkg>::<pkg>__rosidl_generator_py carry the include directories of the
# container the wheels were built in (/opt/python/cpXY-cpXY/include/pythonX.Y and
# .../site-packages/numpy/_core/include). CMake rejects imported targets whose INTERFACE_INCLUDE_DIRECTORIES do not
# exist ("includes non-existent path"), at generate time.
#
# Fix: at the end of the top-level directory (cmake_language(DEFER), i.e. after every find_package ran and before
# generation) rewrite those paths on every imported target to this interpreter's include dir and numpy's include dir.

if(NOT COMMAND cmake_language)
  message(FATAL_ERROR "pip_ros_wheel_fix.cmake needs CMake >= 3.19")
endif()

if(NOT Python3_EXECUTABLE)
  message(FATAL_ERROR "pip_ros_wheel_fix.cmake: pass -DPython3_EXECUTABLE=<venv>/bin/python")
endif()

execute_process(
  COMMAND "${Python3_EXECUTABLE}" -c
    "import sysconfig, numpy; print(sysconfig.get_paths()['include'] + ';' + numpy.get_include())"
  OUTPUT_VARIABLE _prwf_out
  OUTPUT_STRIP_TRAILING_WHITESPACE
  RESULT_VARIABLE _prwf_rc)
if(NOT _prwf_rc EQUAL 0)
  message(FATAL_ERROR "pip_ros_wheel_fix.cmake: could not query Python/numpy include dirs from ${Python3_EXECUTABLE}")
endif()
list(GET _prwf_out 0 PIP_ROS_WHEEL_FIX_PY_INCLUDE)
list(GET _prwf_out 1 PIP_ROS_WHEEL_FIX_NUMPY_INCLUDE)
message(STATUS "pip_ros_wheel_fix: python include ${PIP_ROS_WHEEL_FIX_PY_INCLUDE}")
message(STATUS "pip_ros_wheel_fix: numpy include  ${PIP_ROS_WHEEL_FIX_NUMPY_INCLUDE}")

function(_pip_ros_wheel_fix_targets)
  get_property(_targets DIRECTORY "${CMAKE_SOURCE_DIR}" PROPERTY IMPORTED_TARGETS)
  set(_n 0)
  foreach(_t IN LISTS _targets)
    get_target_property(_inc "${_t}" INTERFACE_INCLUDE_DIRECTORIES)
    if(NOT _inc)
      continue()
    endif()
    set(_new "")
    set(_changed FALSE)
    foreach(_d IN LISTS _inc)
      if(_d MATCHES "^/opt/python/[^/]+/include/python[0-9.]+$")
        list(APPEND _new "${PIP_ROS_WHEEL_FIX_PY_INCLUDE}")
        set(_changed TRUE)
      elseif(_d MATCHES "^/opt/python/.*/numpy/(_core/)?include$")
        list(APPEND _new "${PIP_ROS_WHEEL_FIX_NUMPY_INCLUDE}")
        set(_changed TRUE)
      else()
        list(APPEND _new "${_d}")
      endif()
    endforeach()
    if(_changed)
      list(REMOVE_DUPLICATES _new)
      set_target_properties("${_t}" PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_new}")
      math(EXPR _n "${_n} + 1")
    endif()
  endforeach()
  message(STATUS "pip_ros_wheel_fix: rewrote include dirs of ${_n} imported targets")
endfunction()

cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL _pip_ros_wheel_fix_targets)
