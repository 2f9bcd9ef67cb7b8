# Examples.Texture: `texture --small --out F` must train (exit 0: the loss fell), and
# `texture --small --eval F` must report the same held-out accuracy, in all and per class.
#   cmake -DTEXTURE=path/to/texture -DDIR=scratch/dir -P roundtrip.cmake
if(NOT TEXTURE)
  message(FATAL_ERROR "examples/texture was not built: install libstb-dev (scripts/setup.sh does) and reconfigure")
endif()
file(REMOVE_RECURSE ${DIR})
file(MAKE_DIRECTORY ${DIR})
set(model ${DIR}/model.safetensors)

function(run_texture out)
  execute_process(COMMAND ${TEXTURE} --small ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE stdout ERROR_VARIABLE stderr)
  message("${stdout}${stderr}")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "texture --small ${ARGN} failed (exit ${rc})")
  endif()
  string(REGEX MATCH "per class: [^\n]*\nheld-out accuracy [^\n]*" line "${stdout}")
  if(line STREQUAL "")
    message(FATAL_ERROR "texture --small ${ARGN} printed no held-out accuracy")
  endif()
  set(${out} "${line}" PARENT_SCOPE)
endfunction()

run_texture(trained --out ${model})
run_texture(loaded --eval ${model})
if(NOT trained STREQUAL loaded)
  message(FATAL_ERROR "the saved model reports another accuracy: '${trained}' after training, '${loaded}' loaded")
endif()
message("round trip: ${loaded}")
