# Examples.Style, Examples.StyleTrain: `style --small [ARGS] --out F` must exit 0 (it does only
# when the result's style loss is at least 10x lower than the content image's), say so, and
# write a PNG at F.
#   cmake -DSTYLE=path/to/style -DDIR=scratch/dir [-DARGS=--train] -P check.cmake
if(NOT STYLE)
  message(FATAL_ERROR "examples/style was not built: install libstb-dev (scripts/setup.sh does) and reconfigure")
endif()
file(REMOVE_RECURSE ${DIR})
file(MAKE_DIRECTORY ${DIR})
set(png ${DIR}/out.png)
separate_arguments(args UNIX_COMMAND "${ARGS}")
execute_process(COMMAND ${STYLE} --small ${args} --out ${png} RESULT_VARIABLE rc OUTPUT_VARIABLE stdout
                ERROR_VARIABLE stderr)
message("${stdout}${stderr}")
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "style --small ${ARGS} failed (exit ${rc})")
endif()
string(REGEX MATCH "style loss [^ ]+ -> [^ ]+ \\(([0-9.]+)x lower\\)" line "${stdout}")
if(line STREQUAL "" OR CMAKE_MATCH_1 LESS 10)
  message(FATAL_ERROR "style --small ${ARGS} did not report a style loss 10x lower")
endif()
if(NOT EXISTS ${png})
  message(FATAL_ERROR "style --small ${ARGS} wrote no ${png}")
endif()
file(READ ${png} magic LIMIT 8 HEX)
if(NOT magic STREQUAL "89504e470d0a1a0a")
  message(FATAL_ERROR "${png} is not a PNG (starts with ${magic})")
endif()
message("style: ${line}, wrote ${png}")
