# ktf_add_plugin(<name> SOURCES <src>... [LIBRARIES <lib>...])
#   Builds a ktf plugin: a MODULE library with hidden visibility, -Wl,--no-undefined, linked to
#   ktf::sdk and Torch. Its only exported symbol is the KTF_PLUGIN entry point.
#
# ktf_add_plugin_tests(<target> [WITH <plugin target, file or directory>...] [WITH_INSTALLED])
#   Adds a ctest test that runs the plugin conformance suite (ktf-conformance) on the plugin.
#   WITH loads other plugins the tested components use (a network whose default head is
#   ktf.networks.MLP): in-tree plugin targets, .so files or plugin directories. WITH_INSTALLED
#   loads the plugins of the ktf installation found by find_package(ktf) (KTF_PLUGIN_DIR).
function(ktf_add_plugin name)
  cmake_parse_arguments(ARG "" "" "SOURCES;LIBRARIES" ${ARGN})
  if(NOT ARG_SOURCES)
    message(FATAL_ERROR "ktf_add_plugin(${name}): SOURCES is required")
  endif()
  add_library(${name} MODULE ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ktf::sdk ${ARG_LIBRARIES})
  set_target_properties(${name} PROPERTIES
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON
    POSITION_INDEPENDENT_CODE ON
    DEFINE_SYMBOL "")
  if(KTF_SANITIZE AND CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    # clang's sanitizer runtimes live in the executable: a plugin leaves their symbols undefined.
    target_link_options(${name} PRIVATE -Wl,--as-needed)
  else()
    target_link_options(${name} PRIVATE -Wl,--no-undefined -Wl,--as-needed)
  endif()
  target_compile_options(${name} PRIVATE -Wall -Wextra)
  if(DEFINED KTF_PLUGIN_OUTPUT_DIR)
    # In-tree: plugins land in build/plugins and, installed, in <prefix>/lib/ktf/plugins.
    set_target_properties(${name} PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${KTF_PLUGIN_OUTPUT_DIR}
      INSTALL_RPATH "$ORIGIN/../..")
  endif()
  if(COMMAND ktf_use_pch)
    ktf_use_pch(${name})
  endif()
endfunction()

function(ktf_add_plugin_tests target)
  cmake_parse_arguments(ARG "WITH_INSTALLED" "" "WITH" ${ARGN})
  if(TARGET ktf::conformance)
    set(runner $<TARGET_FILE:ktf::conformance>)
  elseif(TARGET ktf_conformance)
    set(runner $<TARGET_FILE:ktf_conformance>)
  else()
    message(FATAL_ERROR "ktf_add_plugin_tests: the ktf conformance runner is not available")
  endif()
  set(with_args)
  foreach(dep IN LISTS ARG_WITH)
    if(TARGET ${dep})
      list(APPEND with_args --with $<TARGET_FILE:${dep}>)
    else()
      list(APPEND with_args --with ${dep})
    endif()
  endforeach()
  if(ARG_WITH_INSTALLED)
    if(NOT KTF_PLUGIN_DIR)
      message(FATAL_ERROR "ktf_add_plugin_tests(WITH_INSTALLED): KTF_PLUGIN_DIR is not set "
                          "(find_package(ktf) sets it)")
    endif()
    list(APPEND with_args --with ${KTF_PLUGIN_DIR})
  endif()
  add_test(NAME ${target}.conformance COMMAND ${runner} $<TARGET_FILE:${target}> ${with_args})
endfunction()
