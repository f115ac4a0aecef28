# flatring_add_schema(<target> <schema.fbs> [...])
#
# Runs flatc on each schema at build time and adds the directory holding the generated
# <name>_generated.h to the target's include path:
#  - the C++ generator with --gen-name-strings (flatring names the root type) and --bfbs-gen-embed
#    (the binary schema, which a ring stores so that readers without the .fbs can use it), with
#    --bfbs-builtins (the builtin attributes in it: RecordVerifier finds nested_flatbuffer fields);
#  - <name>_generated.h is a small wrapper over flatc's two headers that adds, for the root type,
#    the function FLATRING_SCHEMA finds by argument-dependent lookup:
#      std::span<const std::uint8_t> flatring_binary_schema(const Root*);
# Debian's FlatBuffers 2.0.8 ships no flatbuffers_generate_headers, hence this helper.
include_guard(GLOBAL)

set(FLATRING_SCHEMA_WRAP_SCRIPT ${CMAKE_CURRENT_LIST_DIR}/FlatringSchemaWrap.cmake)

function(flatring_add_schema target)
  if(NOT TARGET flatbuffers::flatc)
    find_program(FLATRING_FLATC flatc REQUIRED)
    set(flatc ${FLATRING_FLATC})
  else()
    set(flatc $<TARGET_FILE:flatbuffers::flatc>)
  endif()
  set(out_dir ${CMAKE_CURRENT_BINARY_DIR}/flatring_generated/${target})
  set(raw_dir ${out_dir}/flatc)
  set(outputs)
  foreach(schema IN LISTS ARGN)
    get_filename_component(abs ${schema} ABSOLUTE)
    get_filename_component(stem ${schema} NAME_WE)
    set(out ${out_dir}/${stem}_generated.h)
    add_custom_command(
      OUTPUT ${out}
      COMMAND ${CMAKE_COMMAND} -E make_directory ${raw_dir}
      COMMAND ${flatc} --cpp --gen-name-strings --scoped-enums --bfbs-gen-embed --bfbs-builtins -o ${raw_dir} ${abs}
      COMMAND ${CMAKE_COMMAND} -DSTEM=${stem} -DRAW_DIR=${raw_dir} -DOUT=${out}
              -P ${FLATRING_SCHEMA_WRAP_SCRIPT}
      DEPENDS ${abs} ${FLATRING_SCHEMA_WRAP_SCRIPT}
      COMMENT "flatc ${stem}.fbs"
      VERBATIM)
    list(APPEND outputs ${out})
  endforeach()
  set(gen_target ${target}_flatring_schemas)
  add_custom_target(${gen_target} DEPENDS ${outputs})
  add_dependencies(${target} ${gen_target})
  target_include_directories(${target} PRIVATE ${out_dir})
endfunction()
