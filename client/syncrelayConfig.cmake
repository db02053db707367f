# find_package(syncrelay): the imported target syncrelay::syncrelay. The public headers
# include <jansson.h>, so jansson is found here too (through pkg-config).
include(CMakeFindDependencyMacro)
find_dependency(PkgConfig)
pkg_check_modules(JANSSON REQUIRED IMPORTED_TARGET jansson)
include(${CMAKE_CURRENT_LIST_DIR}/syncrelayTargets.cmake)
