// A reference interpreter of the tensor IR: what a tensor program means, evaluated directly in
// double precision, element by element, with none of the passes' or code generators' code.
// A pass must not change what a program computes, so the tests evaluate programs before and
// after passes with it and compare (tests/unit/PassSemanticsTest.cpp).
//
// The rules it evaluates by (docs/language.md):
// - Definitions run in program order, each over its whole index domain, row-major; what a
//   definition does not reach of its tensor is 0.
// - A read outside a tensor's shape is 0 (zero padding).
// - A scatter definition adds its value, at its scatter indices where they lie inside the
//   shape, to the tensor as defined so far (0 where nothing defined it).
// - Integer `/` and `%` round toward negative infinity; int(x) truncates toward 0.
// - A reduction over no positions is its identity (sum 0, prod 1, max -inf, min +inf).
// - A function's value is its intrinsic's on constants (foldIntrinsic, compiler/Intrinsics.h);
//   allreduce(x) is x (a group of one process); rand(seed, i...) is randomUniform
//   (compiler/Passes.h), as every backend computes it.
// Loop IR (after lowerToLoops) is not tensor IR: a Load is an internal error here.
#pragma once

#include "compiler/TensorProgram.h"

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace enc::ir {

class ReferenceInterpreter {
public:
  // `variables`: the value of every Size and Param variable `p` still reads (sizes from inputs,
  // hyper-parameters not yet folded, the random seed). Integer and bool values as doubles.
  ReferenceInterpreter(Program p, std::map<std::string, double> variables);

  // The values of a tensor the program reads but does not define (an input, parameter,
  // buffer, saved forward tensor or gradient seed), row-major over its shape.
  void setTensor(const std::string &name, std::vector<double> values);

  // Runs every definition in order. Throws Error for a variable or tensor it has no value of.
  void run();

  // A tensor's values: given with setTensor or computed by run().
  const std::vector<double> &tensor(const std::string &name) const;
  bool hasTensor(const std::string &name) const { return buffers_.count(name) != 0; }
  // Every tensor with values, by name.
  const std::map<std::string, std::vector<double>> &tensors() const { return buffers_; }
  // A declared tensor's shape, its sizes evaluated.
  std::vector<int64_t> shape(const std::string &name);

private:
  Program p_;
  std::map<std::string, double> variables_;
  std::map<std::string, std::vector<double>> buffers_;
  std::map<std::string, std::vector<int64_t>> shapes_; // evaluated once per tensor
  std::map<std::string, int64_t> indices_;             // the index variables bound at this point

  void define(const Definition &d);
  double eval(const Expr &e);
  double read(const ExprNode &access);
  double call(const ExprNode &call);
  double binary(const ExprNode &e);
  double reduce(const ExprNode &r, size_t var);
  // The row-major offset of `position` in `shape`, or -1 outside it.
  static int64_t offsetOf(const std::vector<int64_t> &shape, const std::vector<int64_t> &position);
};

} // namespace enc::ir
