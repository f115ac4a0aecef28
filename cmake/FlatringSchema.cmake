# flatring_add_schema(<target> <schema.fbs> [...])
#
# Runs flatc (C++ generator, with --gen-name-strings so flatring can name the root type) on each
# schema at build time and adds the directory holding the generated <name>_generated.h to the
# target's include path. Debian's FlatBuffers 2.0.8 ships no flatbuffers_generate_headers, hence
# this helper.
include_guard(GLOBAL)

function(flatring_add_schema target)
  if(NOT TARGET flatbuffers::flatc)
    find_program(FLATRING_FLATC flatc REQUIRED)
    set(flatc ${FLATRING_FLATC})
  else()
    set(flatc $<TARGET_FILE:flatbuffers::flatc>)
  endif()
  set(out_dir ${CMAKE_CURRENT_BINARY_DIR}/flatring_generated/${target})
  set(outputs)
  foreach(schema IN LISTS ARGN)
    get_filename_component(abs ${schema} ABSOLUTE)
    get_filename_component(stem ${schema} NAME_WE)
    set(out ${out_dir}/${stem}_generated.h)
    add_custom_command(
      OUTPUT ${out}
      COMMAND ${CMAKE_COMMAND} -E make_directory ${out_dir}
      COMMAND ${flatc} --cpp --gen-name-strings --scoped-enums -o ${out_dir} ${abs}
      DEPENDS ${abs}
      COMMENT "flatc ${stem}.fbs"
      VERBATIM)
    list(APPEND outputs ${out})
  endforeach()
  set(gen_target ${target}_flatring_schemas)
  add_custom_target(${gen_target} DEPENDS ${outputs})
  add_dependencies(${target} ${gen_target})
  target_include_directories(${target} PRIVATE ${out_dir})
endfunction()
