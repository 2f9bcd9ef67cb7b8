#include "compiler/codegen/llvm/LLVMCodegen.h"

#include "compiler/Intrinsics.h"
#include "compiler/TileContractions.h"
#include "support/Error.h"
#include "support/InternalError.h"

#include <llvm/IR/IRBuilder.h>
#include <llvm/IR/Intrinsics.h>
#include <llvm/IR/MDBuilder.h>
#include <llvm/IR/Module.h>

#include <map>
#include <set>

namespace enc::codegen {
namespace {

using namespace ir;

class Emitter {
public:
  Emitter(const Kernel &k, const ElementTypes &types, llvm::Module &m)
      : kernel_(k), types_(types), module_(m), ctx_(m.getContext()), b_(ctx_), f64_(types.f64()) {
    fty_ = f64_ ? llvm::Type::getDoubleTy(ctx_) : llvm::Type::getFloatTy(ctx_);
    i64_ = llvm::Type::getInt64Ty(ctx_);
    ptr_ = llvm::PointerType::getUnqual(ctx_);
  }

  llvm::Function *run() {
    // Inner function: one noalias pointer per buffer, inlined into the ABI wrapper, so LLVM
    // knows buffers don't overlap (the runtime never aliases an output with an input).
    std::vector<llvm::Type *> argTypes(kernel_.buffers.size(), ptr_);
    argTypes.push_back(ptr_);
    argTypes.push_back(i64_);
    argTypes.push_back(i64_);
    auto *innerTy = llvm::FunctionType::get(llvm::Type::getVoidTy(ctx_), argTypes, false);
    auto *inner = llvm::Function::Create(innerTy, llvm::Function::InternalLinkage, kernel_.name + ".body", module_);
    inner->addFnAttr(llvm::Attribute::AlwaysInline);
    inner->addFnAttr(llvm::Attribute::NoUnwind);
    for (size_t i = 0; i < kernel_.buffers.size(); ++i) {
      inner->addParamAttr(static_cast<unsigned>(i), llvm::Attribute::NoAlias);
      buffers_[kernel_.buffers[i]] = inner->getArg(static_cast<unsigned>(i));
    }
    auto argIt = inner->arg_begin() + static_cast<long>(kernel_.buffers.size());
    llvm::Value *params = &*argIt++;
    begin_ = &*argIt++;
    end_ = &*argIt++;

    auto *entry = llvm::BasicBlock::Create(ctx_, "entry", inner);
    b_.SetInsertPoint(entry);
    llvm::FastMathFlags fmf;
    fmf.setAllowContract(true);
    b_.setFastMathFlags(fmf);
    for (size_t i = 0; i < kernel_.params.size(); ++i) {
      const SizeParam &p = kernel_.params[i];
      llvm::Value *slot = b_.CreateConstInBoundsGEP1_64(i64_, params, i);
      if (p.type == Type::Float) {
        llvm::Value *d = b_.CreateLoad(llvm::Type::getDoubleTy(ctx_), slot, p.name);
        vars_[p.name] = f64_ ? d : b_.CreateFPTrunc(d, fty_);
      } else if (p.type == Type::Bool) {
        vars_[p.name] = b_.CreateICmpNE(b_.CreateLoad(i64_, slot), b_.getInt64(0), p.name);
      } else {
        vars_[p.name] = b_.CreateLoad(i64_, slot, p.name);
      }
    }
    emit(kernel_.body);
    b_.CreateRetVoid();

    // The ABI wrapper.
    auto *fnTy = llvm::FunctionType::get(llvm::Type::getVoidTy(ctx_), {ptr_, ptr_, i64_, i64_}, false);
    auto *fn = llvm::Function::Create(fnTy, llvm::Function::ExternalLinkage, kernel_.name, module_);
    fn->addFnAttr(llvm::Attribute::NoUnwind);
    llvm::IRBuilder<> w(llvm::BasicBlock::Create(ctx_, "entry", fn));
    std::vector<llvm::Value *> args;
    for (size_t i = 0; i < kernel_.buffers.size(); ++i)
      args.push_back(w.CreateLoad(ptr_, w.CreateConstInBoundsGEP1_64(ptr_, fn->getArg(0), i), kernel_.buffers[i]));
    args.push_back(fn->getArg(1));
    args.push_back(fn->getArg(2));
    args.push_back(fn->getArg(3));
    w.CreateCall(inner, args);
    w.CreateRetVoid();
    return fn;
  }

private:
  const Kernel &kernel_;
  const ElementTypes &types_;
  llvm::Module &module_;
  llvm::LLVMContext &ctx_;
  llvm::IRBuilder<> b_;
  bool f64_;
  llvm::Type *fty_, *i64_, *ptr_;
  llvm::Value *begin_ = nullptr, *end_ = nullptr;
  std::map<std::string, llvm::Value *> buffers_;
  std::set<std::string> allocs_; // local arrays: always the compute type
  std::map<std::string, llvm::Value *> vars_;     // SSA values: loop indices, lets, params
  std::map<std::string, llvm::AllocaInst *> slots_; // assigned locals (mem2reg promotes them)
  // Inside a Vectorized loop: its variable, its lanes, and the names whose values are vectors.
  std::string vecVar_;
  unsigned lanes_ = 0;
  std::set<std::string> varying_;

  bool isVector(llvm::Value *v) const { return v->getType()->isVectorTy(); }
  // A scalar as a vector of the current lanes (unchanged outside vector loops or when a vector).
  llvm::Value *widen(llvm::Value *v) {
    if (lanes_ == 0 || isVector(v)) return v;
    return b_.CreateVectorSplat(lanes_, v);
  }
  void harmonize(llvm::Value *&a, llvm::Value *&c) {
    if (isVector(a) || isVector(c)) {
      a = widen(a);
      c = widen(c);
    }
  }
  // A constant of the scalar type of `like`, as a vector when `like` is one.
  llvm::Value *constLike(llvm::Constant *c, llvm::Value *like) {
    if (!isVector(like)) return c;
    return llvm::ConstantVector::getSplat(llvm::cast<llvm::VectorType>(like->getType())->getElementCount(), c);
  }
  // A float constant, as a vector when `like` is one (functions widened in vector loops).
  llvm::Value *floatLike(double v, llvm::Value *like) { return constLike(llvm::ConstantFP::get(fty_, v), like); }
  llvm::Type *typeLike(llvm::Type *scalar, llvm::Value *like) {
    if (!isVector(like)) return scalar;
    return llvm::VectorType::get(scalar, llvm::cast<llvm::VectorType>(like->getType())->getElementCount());
  }
  bool varying(const Expr &e) const {
    return lanes_ != 0 && anyNode(e, [&](const Expr &n) { return n->kind == ExprKind::Var && varying_.count(n->name); });
  }
  // How many elements the index e moves per lane, when that is a constant and nothing else in
  // e varies.
  std::optional<int64_t> laneStride(const Expr &e) const {
    if (anyNode(e, [&](const Expr &n) {
          return (n->kind == ExprKind::Var && n->name != vecVar_ && varying_.count(n->name)) || n->kind == ExprKind::Load;
        }))
      return std::nullopt;
    return strideIn(e, vecVar_);
  }
  // Whether the index e moves by exactly one element per lane (and nothing else in it varies).
  bool unitStride(const Expr &e) const { return laneStride(e) == std::optional<int64_t>(1); }
  // The stride of e per lane when it is small (2 to kMaxVectorLoadStride), otherwise 0: such
  // reads are one wider load and a shuffle, not a gather.
  int64_t smallStride(const Expr &e) const {
    std::optional<int64_t> s = laneStride(e);
    return s && *s >= 2 && *s <= kMaxVectorLoadStride ? *s : 0;
  }
  // buffer[start + lane * stride] for every lane: lanes * stride consecutive elements loaded
  // under a mask that keeps only the lanes' own (so nothing past the last lane is touched;
  // `mask`, when given, also drops lanes), then the lanes' elements shuffled together.
  llvm::Value *stridedLoad(const std::string &buffer, const Expr &start, int64_t stride, llvm::Value *mask) {
    ElemType t = elemOf(buffer);
    unsigned wide = lanes_ * static_cast<unsigned>(stride);
    llvm::Value *none = llvm::Constant::getNullValue(llvm::FixedVectorType::get(b_.getInt1Ty(), lanes_));
    std::vector<int> spread, gather;
    for (unsigned m = 0; m < wide; ++m) spread.push_back(m % stride == 0 ? static_cast<int>(m / stride) : static_cast<int>(lanes_));
    for (unsigned l = 0; l < lanes_; ++l) gather.push_back(static_cast<int>(l * stride));
    llvm::Value *wideMask = b_.CreateShuffleVector(mask ? mask : allLanes(), none, spread);
    auto *wideTy = llvm::FixedVectorType::get(storedTy(t), wide);
    llvm::Value *p = b_.CreateGEP(storedTy(t), buffers_.at(buffer), lane0(start));
    llvm::Value *v = b_.CreateMaskedLoad(wideTy, p, alignOf(t), wideMask, llvm::Constant::getNullValue(wideTy));
    return toCompute(b_.CreateShuffleVector(v, gather), t);
  }
  // e evaluated for lane 0 only.
  llvm::Value *lane0(const Expr &e) {
    llvm::Value *saved = vars_.at(vecVar_);
    vars_[vecVar_] = b_.getInt64(0);
    llvm::Value *v = expr(e);
    vars_[vecVar_] = saved;
    return v;
  }
  llvm::Type *vecTy() { return llvm::FixedVectorType::get(fty_, lanes_); }
  llvm::Value *allLanes() { return llvm::ConstantInt::getTrue(llvm::FixedVectorType::get(b_.getInt1Ty(), lanes_)); }

  // ---- storage types: a buffer's elements as stored, converted to and from fty_ -----------------
  ElemType elemOf(const std::string &buffer) const { return allocs_.count(buffer) ? types_.compute : types_.of(buffer); }
  // bf16 is loaded and stored as i16 bits, widened by a shift and rounded with integer
  // arithmetic, so it needs no CPU support and vectorizes at full width. f16 goes through
  // LLVM's `half` (F16C's vcvtph2ps / vcvtps2ph on x86-64): an integer version vectorized
  // wider but its rounding cost more than the hardware conversion (batch norm 2.9 -> 3.7 ms).
  llvm::Type *storedTy(ElemType t) {
    switch (t) {
    case ElemType::F16: return llvm::Type::getHalfTy(ctx_);
    case ElemType::BF16: return b_.getInt16Ty();
    case ElemType::F32: return llvm::Type::getFloatTy(ctx_);
    case ElemType::F64: return llvm::Type::getDoubleTy(ctx_);
    }
    return fty_;
  }
  llvm::Type *storedVecTy(ElemType t) { return llvm::FixedVectorType::get(storedTy(t), lanes_); }
  llvm::Align alignOf(ElemType t) { return llvm::Align(static_cast<uint64_t>(elemTypeBytes(t))); }
  llvm::Value *i32Like(uint32_t c, llvm::Value *like) { return constLike(b_.getInt32(c), like); }
  // Stored element(s) -> the compute type: exact.
  llvm::Value *toCompute(llvm::Value *v, ElemType t) {
    if (t == types_.compute) return v;
    if (t == ElemType::BF16)
      v = b_.CreateBitCast(b_.CreateShl(b_.CreateZExt(v, typeLike(b_.getInt32Ty(), v)), 16),
                           typeLike(llvm::Type::getFloatTy(ctx_), v));
    return v->getType()->getScalarType() == fty_ ? v : b_.CreateFPExt(v, typeLike(fty_, v));
  }
  // Compute type -> stored element(s): rounded to nearest, ties to even; NaN stays NaN.
  llvm::Value *toStorage(llvm::Value *v, ElemType t) {
    if (t == types_.compute) return v;
    if (t != ElemType::BF16) return b_.CreateFPTrunc(v, typeLike(storedTy(t), v));
    if (f64_) v = b_.CreateFPTrunc(v, typeLike(llvm::Type::getFloatTy(ctx_), v));
    llvm::Value *bits = b_.CreateBitCast(v, typeLike(b_.getInt32Ty(), v));
    llvm::Value *high = b_.CreateLShr(bits, 16);
    llvm::Value *odd = b_.CreateAnd(high, i32Like(1, v));
    llvm::Value *rounded = b_.CreateLShr(b_.CreateAdd(b_.CreateAdd(bits, i32Like(0x7fff, v)), odd), 16);
    llvm::Value *quietNaN = b_.CreateOr(high, i32Like(0x40, v));
    return b_.CreateTrunc(b_.CreateSelect(b_.CreateFCmpUNO(v, v), quietNaN, rounded), typeLike(b_.getInt16Ty(), v));
  }

  // The address of buffer[index]: one pointer, or one per lane.
  llvm::Value *address(const std::string &buffer, const Expr &index, bool *contiguous) {
    llvm::Type *ty = storedTy(elemOf(buffer));
    *contiguous = false;
    if (!varying(index)) return b_.CreateInBoundsGEP(ty, buffers_.at(buffer), expr(index));
    if (unitStride(index)) {
      *contiguous = true;
      return b_.CreateInBoundsGEP(ty, buffers_.at(buffer), lane0(index));
    }
    return b_.CreateInBoundsGEP(ty, buffers_.at(buffer), widen(expr(index)));
  }
  // Elements as stored at `p` (from address): a vector load, a gather or one element.
  llvm::Value *loadStored(llvm::Value *p, bool contiguous, ElemType t) {
    if (contiguous) return b_.CreateAlignedLoad(storedVecTy(t), p, alignOf(t));
    if (p->getType()->isVectorTy())
      return b_.CreateMaskedGather(storedVecTy(t), p, alignOf(t), allLanes(), llvm::PoisonValue::get(storedVecTy(t)));
    return b_.CreateLoad(storedTy(t), p);
  }
  llvm::Value *loadFrom(const std::string &buffer, const Expr &index) {
    if (varying(index))
      if (int64_t stride = smallStride(index)) return stridedLoad(buffer, index, stride, nullptr);
    bool contiguous;
    llvm::Value *p = address(buffer, index, &contiguous);
    ElemType t = elemOf(buffer);
    return toCompute(loadStored(p, contiguous, t), t);
  }
  // v's lanes stored at buffer[start + lane * stride]: spread into lanes * stride consecutive
  // elements and stored under a mask of the lanes' own (a scatter costs a store per lane).
  void stridedStore(const std::string &buffer, const Expr &start, int64_t stride, llvm::Value *v) {
    ElemType t = elemOf(buffer);
    unsigned wide = lanes_ * static_cast<unsigned>(stride);
    std::vector<int> spread;
    std::vector<llvm::Constant *> keep;
    for (unsigned m = 0; m < wide; ++m) {
      spread.push_back(m % stride == 0 ? static_cast<int>(m / stride) : -1);
      keep.push_back(b_.getInt1(m % stride == 0));
    }
    llvm::Value *p = b_.CreateGEP(storedTy(t), buffers_.at(buffer), lane0(start));
    b_.CreateMaskedStore(b_.CreateShuffleVector(v, spread), p, alignOf(t), llvm::ConstantVector::get(keep));
  }
  void storeTo(const std::string &buffer, const Expr &index, llvm::Value *v, bool accumulate) {
    if (varying(index))
      if (int64_t stride = smallStride(index)) {
        v = widen(v);
        if (accumulate) v = b_.CreateFAdd(stridedLoad(buffer, index, stride, nullptr), v);
        return stridedStore(buffer, index, stride, toStorage(v, elemOf(buffer)));
      }
    bool contiguous;
    llvm::Value *p = address(buffer, index, &contiguous);
    ElemType t = elemOf(buffer);
    bool vector = contiguous || p->getType()->isVectorTy();
    if (vector) v = widen(v);
    if (accumulate) v = b_.CreateFAdd(toCompute(loadStored(p, contiguous, t), t), v);
    if (!vector && isVector(v)) v = b_.CreateExtractElement(v, lanes_ - 1);
    v = toStorage(v, t);
    if (contiguous) b_.CreateAlignedStore(v, p, alignOf(t));
    else if (vector) b_.CreateMaskedScatter(v, p, alignOf(t), allLanes());
    else b_.CreateStore(v, p);
  }

  llvm::Type *typeOf(Type t) {
    switch (t) {
    case Type::Int: return i64_;
    case Type::Float: return fty_;
    case Type::Bool: return b_.getInt1Ty();
    }
    return fty_;
  }

  void emit(const Stmt &s) {
    switch (s->kind) {
    case StmtKind::Block:
      for (const Stmt &c : s->body) emit(c);
      return;
    case StmtKind::For: return emitFor(*s);
    case StmtKind::Let: {
      llvm::Value *v = expr(s->value);
      // Locals that are later assigned (accumulators) live in a stack slot.
      auto *fn = b_.GetInsertBlock()->getParent();
      llvm::IRBuilder<> entry(&fn->getEntryBlock(), fn->getEntryBlock().begin());
      llvm::AllocaInst *slot = entry.CreateAlloca(isVector(v) ? v->getType() : typeOf(s->type), nullptr, s->name);
      b_.CreateStore(v, slot);
      slots_[s->name] = slot;
      if (isVector(v)) varying_.insert(s->name);
      else varying_.erase(s->name);
      return;
    }
    case StmtKind::Assign: {
      // Accumulation may be reassociated, which is what lets LLVM vectorize reductions.
      llvm::FastMathFlags saved = b_.getFastMathFlags();
      llvm::FastMathFlags fmf = saved;
      fmf.setAllowReassoc(true);
      fmf.setNoSignedZeros(true);
      b_.setFastMathFlags(fmf);
      llvm::AllocaInst *slot = slots_.at(s->name);
      llvm::Value *v;
      if (varying(s->value) && !slot->getAllocatedType()->isVectorTy()) {
        // A uniform local accumulating over the lanes: s = s + x adds the sum of x's lanes,
        // s = max(s, x) (min) takes their max (min), as maxnum (minnum) does.
        const Expr &e = s->value;
        const bool acrossLanes = e->kind == ExprKind::Binary &&
                                 (e->binOp == BinOp::Add || e->binOp == BinOp::Max || e->binOp == BinOp::Min) &&
                                 e->args[0]->kind == ExprKind::Var && e->args[0]->name == s->name && s->type == Type::Float;
        if (!acrossLanes) internalError("kernel {}: unsupported reduction across lanes: {}", kernel_.name, print(e));
        llvm::Value *lanes = widen(expr(e->args[1]));
        llvm::Value *current = b_.CreateLoad(fty_, slot);
        if (e->binOp == BinOp::Add) v = b_.CreateFAdd(current, b_.CreateFAddReduce(floatConst(-0.0), lanes));
        else if (e->binOp == BinOp::Max) v = intrinsic(llvm::Intrinsic::maxnum, {current, b_.CreateFPMaxReduce(lanes)});
        else v = intrinsic(llvm::Intrinsic::minnum, {current, b_.CreateFPMinReduce(lanes)});
      } else {
        v = expr(s->value);
        if (slot->getAllocatedType()->isVectorTy()) v = widen(v);
      }
      b_.setFastMathFlags(saved);
      b_.CreateStore(v, slot);
      return;
    }
    case StmtKind::Store: {
      llvm::Value *v = expr(s->value);
      if (lanes_) {
        storeTo(s->name, s->index, v, s->accumulate);
        return;
      }
      ElemType t = elemOf(s->name);
      llvm::Value *p = b_.CreateInBoundsGEP(storedTy(t), buffers_.at(s->name), expr(s->index));
      if (s->accumulate) v = b_.CreateFAdd(toCompute(b_.CreateLoad(storedTy(t), p), t), v);
      b_.CreateStore(toStorage(v, t), p);
      return;
    }
    case StmtKind::Alloc: {
      int64_t n = 0;
      if (!isConst(s->value, &n) || n < 0) internalError("kernel {}: alloc of non-constant size", kernel_.name);
      if (s->shared || s->fragment != Fragment::None || s->elem)
        internalError("kernel {}: a GPU array ({}) in a CPU kernel", kernel_.name, s->name);
      auto *fn = b_.GetInsertBlock()->getParent();
      llvm::IRBuilder<> entry(&fn->getEntryBlock(), fn->getEntryBlock().begin());
      llvm::AllocaInst *a = entry.CreateAlloca(llvm::ArrayType::get(fty_, static_cast<uint64_t>(std::max<int64_t>(n, 1))), nullptr, s->name);
      a->setAlignment(llvm::Align(64));
      buffers_[s->name] = a;
      allocs_.insert(s->name);
      return;
    }
    case StmtKind::WarpReduce:
    case StmtKind::IfLaneZero:
    case StmtKind::If:
    case StmtKind::Barrier:
    case StmtKind::Matrix:
    case StmtKind::AsyncCopy:
    case StmtKind::AsyncCommit:
    case StmtKind::AsyncWait: internalError("GPU statement in a CPU kernel");
    }
  }

  void emitFor(const StmtNode &s) {
    if (s.forKind == ForKind::Unrolled || s.forKind == ForKind::Vectorized) {
      int64_t n = 0;
      if (!isConst(s.value, &n) || n < 1) internalError("kernel {}: loop {} needs a constant extent", kernel_.name, s.name);
      llvm::Value *saved = vars_.count(s.name) ? vars_[s.name] : nullptr;
      if (s.forKind == ForKind::Unrolled) {
        for (int64_t i = 0; i < n; ++i) {
          vars_[s.name] = b_.getInt64(static_cast<uint64_t>(i));
          for (const Stmt &c : s.body) emit(c);
        }
      } else {
        if (lanes_) internalError("kernel {}: nested vectorized loops", kernel_.name);
        std::vector<llvm::Constant *> iota;
        for (int64_t i = 0; i < n; ++i) iota.push_back(b_.getInt64(static_cast<uint64_t>(i)));
        vars_[s.name] = llvm::ConstantVector::get(iota);
        vecVar_ = s.name;
        lanes_ = static_cast<unsigned>(n);
        varying_ = {s.name};
        for (const Stmt &c : s.body) emit(c);
        lanes_ = 0;
        vecVar_.clear();
        varying_.clear();
      }
      if (saved) vars_[s.name] = saved;
      else vars_.erase(s.name);
      return;
    }
    llvm::Function *fn = b_.GetInsertBlock()->getParent();
    llvm::Value *lo = b_.getInt64(0), *hi;
    if (s.forKind == ForKind::Parallel) {
      lo = begin_;
      hi = end_;
    } else {
      hi = expr(s.value);
    }
    llvm::BasicBlock *pre = b_.GetInsertBlock();
    auto *header = llvm::BasicBlock::Create(ctx_, s.name + ".header", fn);
    auto *body = llvm::BasicBlock::Create(ctx_, s.name + ".body", fn);
    auto *exit = llvm::BasicBlock::Create(ctx_, s.name + ".exit", fn);
    b_.CreateBr(header);
    b_.SetInsertPoint(header);
    llvm::PHINode *iv = b_.CreatePHI(i64_, 2, s.name);
    iv->addIncoming(lo, pre);
    b_.CreateCondBr(b_.CreateICmpSLT(iv, hi), body, exit);
    b_.SetInsertPoint(body);
    llvm::Value *saved = vars_.count(s.name) ? vars_[s.name] : nullptr;
    vars_[s.name] = iv;
    for (const Stmt &c : s.body) emit(c);
    llvm::Value *next = b_.CreateAdd(iv, b_.getInt64(1), s.name + ".next", /*HasNUW=*/true, /*HasNSW=*/true);
    iv->addIncoming(next, b_.GetInsertBlock());
    llvm::BranchInst *latch = b_.CreateBr(header);
    if (readsOrWritesF16()) latch->setMetadata(llvm::LLVMContext::MD_loop, vectorizeWidthHint(kF16VectorWidth));
    b_.SetInsertPoint(exit);
    if (saved) vars_[s.name] = saved;
    else vars_.erase(s.name);
  }

  // LLVM's cost model prices half <-> float conversions without native f16 arithmetic so high
  // that it vectorizes f16 loops 4 wide, though F16C converts 8 or 16 at once: batch norm
  // with f16 storage took 4.3 ms at the width LLVM chose, 2.6 ms at 8 and 1.7 ms at 16 (f32
  // 3.3 ms, bf16 2.0 ms in the same run). Forcing a width on f32 or bf16 loops did not help.
  static constexpr int kF16VectorWidth = 16;
  llvm::MDNode *vectorizeWidthHint(int width) {
    llvm::MDNode *widthMd = llvm::MDNode::get(ctx_, {llvm::MDString::get(ctx_, "llvm.loop.vectorize.width"),
                                                     llvm::ConstantAsMetadata::get(b_.getInt32(width))});
    llvm::MDNode *loop = llvm::MDNode::getDistinct(ctx_, {nullptr, widthMd});
    loop->replaceOperandWith(0, loop); // a loop ID refers to itself
    return loop;
  }
  bool readsOrWritesF16() const {
    for (const std::string &b : kernel_.buffers)
      if (elemOf(b) == ElemType::F16) return true;
    return false;
  }

  llvm::Value *intrinsic(llvm::Intrinsic::ID id, std::vector<llvm::Value *> args) {
    llvm::Function *f = llvm::Intrinsic::getDeclaration(&module_, id, {args[0]->getType()});
    return b_.CreateCall(f, args);
  }

  // e^x for f32 lanes as inline arithmetic (f64 keeps llvm.exp). The vector library's expf
  // leaves its fast path for any lane below about -87, where e^x is subnormal or 0, and
  // redoes the whole vector one lane at a time: a softmax over logits that span more than 87
  // (Encoding's weights on unit-variance features) ran 3x slower. Here: n = round(x log2 e),
  // r = x - n ln 2 in two parts (Cody and Waite), e^r by Cephes' degree-7 polynomial for
  // |r| <= ln 2 / 2 (about 1 ulp), times 2^n as two halves so that subnormal results round
  // once and x >= 88.73 overflows to inf. x is clamped to [-104, 89] first (beyond either
  // end the result is 0 or inf already); NaN stays NaN.
  llvm::Value *expF32(llvm::Value *x) {
    auto c = [&](double v) { return floatLike(v, x); };
    auto fma = [&](llvm::Value *a, llvm::Value *m, llvm::Value *add) { return intrinsic(llvm::Intrinsic::fmuladd, {a, m, add}); };
    llvm::Value *xc = intrinsic(llvm::Intrinsic::minnum, {intrinsic(llvm::Intrinsic::maxnum, {x, c(-104.0)}), c(89.0)});
    llvm::Value *n = intrinsic(llvm::Intrinsic::rint, {b_.CreateFMul(xc, c(1.44269504088896341))});
    llvm::Value *r = fma(n, c(-0.693359375), xc);
    r = fma(n, c(2.12194440e-4), r);
    llvm::Value *p = c(1.9875691500e-4);
    for (double k : {1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1}) p = fma(p, r, c(k));
    llvm::Value *er = b_.CreateFAdd(fma(p, b_.CreateFMul(r, r), r), c(1.0));
    llvm::Type *i32 = typeLike(b_.getInt32Ty(), x);
    llvm::Value *ni = b_.CreateFPToSI(n, i32);
    llvm::Value *half = b_.CreateAShr(ni, constLike(b_.getInt32(1), x));
    auto pow2 = [&](llvm::Value *e) { // 2^e for -126 <= e <= 127
      return b_.CreateBitCast(b_.CreateShl(b_.CreateAdd(e, constLike(b_.getInt32(127), x)), constLike(b_.getInt32(23), x)),
                              x->getType());
    };
    llvm::Value *y = b_.CreateFMul(b_.CreateFMul(er, pow2(half)), pow2(b_.CreateSub(ni, half)));
    return b_.CreateSelect(b_.CreateFCmpUNO(x, x), x, y);
  }
  llvm::Value *expOf(llvm::Value *x) { return f64_ ? intrinsic(llvm::Intrinsic::exp, {x}) : expF32(x); }

  llvm::Value *libm(const char *name, llvm::Value *x) {
    std::string sym = f64_ ? name : std::string(name) + "f";
    llvm::FunctionCallee f = module_.getOrInsertFunction(sym, fty_, fty_);
    return b_.CreateCall(f, {x});
  }

  llvm::Value *floatConst(double v) { return llvm::ConstantFP::get(fty_, v); }
  static bool isZeroFloat(const Expr &e) {
    return (e->kind == ExprKind::FloatImm && e->floatValue == 0) || (e->kind == ExprKind::IntImm && e->intValue == 0);
  }

  llvm::Value *expr(const Expr &e) {
    switch (e->kind) {
    case ExprKind::IntImm: return b_.getInt64(static_cast<uint64_t>(e->intValue));
    case ExprKind::FloatImm: return floatConst(e->floatValue);
    case ExprKind::BoolImm: return b_.getInt1(e->boolValue);
    case ExprKind::Var: {
      if (auto it = slots_.find(e->name); it != slots_.end()) return b_.CreateLoad(it->second->getAllocatedType(), it->second);
      if (auto it = vars_.find(e->name); it != vars_.end()) return it->second;
      internalError("kernel {} reads unbound variable '{}'", kernel_.name, e->name);
    }
    case ExprKind::Load: {
      if (lanes_) return loadFrom(e->name, e->args[0]);
      ElemType t = elemOf(e->name);
      llvm::Value *p = b_.CreateInBoundsGEP(storedTy(t), buffers_.at(e->name), expr(e->args[0]));
      return toCompute(b_.CreateLoad(storedTy(t), p), t);
    }
    case ExprKind::Cast: {
      llvm::Value *a = expr(e->args[0]);
      Type from = e->args[0]->type;
      llvm::Type *f = typeLike(fty_, a), *i = typeLike(i64_, a);
      if (e->type == Type::Float) return from == Type::Bool ? b_.CreateUIToFP(a, f) : b_.CreateSIToFP(a, f);
      if (e->type == Type::Int && from == Type::Bool) return b_.CreateZExt(a, i);
      // int(x) saturates at the 64-bit limits and takes NaN to 0 (fptosi would be poison there).
      if (e->type == Type::Int)
        return b_.CreateCall(llvm::Intrinsic::getDeclaration(&module_, llvm::Intrinsic::fptosi_sat, {i, a->getType()}), {a});
      return from == Type::Float ? b_.CreateFCmpUNE(a, constLike(llvm::ConstantFP::get(fty_, 0.0), a))
                                 : b_.CreateICmpNE(a, constLike(b_.getInt64(0), a));
    }
    case ExprKind::Unary: {
      llvm::Value *a = expr(e->args[0]);
      if (e->unOp == UnOp::Not) return b_.CreateNot(a);
      return e->type == Type::Float ? b_.CreateFNeg(a) : b_.CreateNeg(a);
    }
    case ExprKind::Select: {
      if (lanes_) {
        // select(in bounds, X[clamped index], 0) with a unit-stride unclamped index: a masked load.
        const Expr &l = e->args[1];
        if (l->kind == ExprKind::Load && isZeroFloat(e->args[2]) && (varying(e->args[0]) || varying(l->args[0]))) {
          Expr raw = unclampedIndex(l->args[0]);
          if (int64_t stride = varying(raw) ? smallStride(raw) : 0)
            return stridedLoad(l->name, raw, stride, widen(expr(e->args[0])));
          if (varying(raw) && unitStride(raw)) {
            llvm::Value *mask = widen(expr(e->args[0]));
            ElemType t = elemOf(l->name);
            llvm::Value *p = b_.CreateGEP(storedTy(t), buffers_.at(l->name), lane0(raw));
            return toCompute(b_.CreateMaskedLoad(storedVecTy(t), p, alignOf(t), mask,
                                                 llvm::Constant::getNullValue(storedVecTy(t))),
                             t);
          }
        }
      }
      llvm::Value *c = expr(e->args[0]);
      llvm::Value *t = expr(e->args[1]), *f = expr(e->args[2]);
      if (isVector(c) || isVector(t) || isVector(f)) {
        c = widen(c);
        t = widen(t);
        f = widen(f);
      }
      return b_.CreateSelect(c, t, f);
    }
    case ExprKind::Binary: return binaryExpr(*e);
    case ExprKind::Call: return callExpr(*e);
    case ExprKind::Access:
    case ExprKind::Reduce: break;
    }
    internalError("tensor-level expression in kernel {}: {}", kernel_.name, print(e));
  }

  llvm::Value *binaryExpr(const ExprNode &e) {
    const Expr &lhs = e.args[0], &rhs = e.args[1];
    if (e.binOp == BinOp::Pow) {
      // Small integer powers as multiplications: exact, fast, and vectorizable.
      double p = rhs->kind == ExprKind::IntImm ? static_cast<double>(rhs->intValue)
                                                : (rhs->kind == ExprKind::FloatImm ? rhs->floatValue : -1e300);
      llvm::Value *x = expr(lhs);
      if (p == 1) return x;
      if (p == 2) return b_.CreateFMul(x, x);
      if (p == 3) return b_.CreateFMul(b_.CreateFMul(x, x), x);
      if (p == 0.5) return intrinsic(llvm::Intrinsic::sqrt, {x});
      return intrinsic(llvm::Intrinsic::pow, {x, b_.CreateSIToFP(expr(rhs), fty_)});
    }
    llvm::Value *a = expr(lhs);
    llvm::Value *c = expr(rhs);
    harmonize(a, c);
    Type t = lhs->type;
    if (t == Type::Float) {
      switch (e.binOp) {
      case BinOp::Add: return b_.CreateFAdd(a, c);
      case BinOp::Sub: return b_.CreateFSub(a, c);
      case BinOp::Mul: return b_.CreateFMul(a, c);
      case BinOp::Div: return b_.CreateFDiv(a, c);
      case BinOp::Mod: return b_.CreateFRem(a, c);
      case BinOp::Min: return intrinsic(llvm::Intrinsic::minnum, {a, c});
      case BinOp::Max: return intrinsic(llvm::Intrinsic::maxnum, {a, c});
      case BinOp::Lt: return b_.CreateFCmpOLT(a, c);
      case BinOp::Le: return b_.CreateFCmpOLE(a, c);
      case BinOp::Gt: return b_.CreateFCmpOGT(a, c);
      case BinOp::Ge: return b_.CreateFCmpOGE(a, c);
      case BinOp::Eq: return b_.CreateFCmpOEQ(a, c);
      case BinOp::Ne: return b_.CreateFCmpUNE(a, c);
      default: break;
      }
    } else {
      switch (e.binOp) {
      case BinOp::Add: return b_.CreateAdd(a, c);
      case BinOp::Sub: return b_.CreateSub(a, c);
      case BinOp::Mul: return b_.CreateMul(a, c);
      case BinOp::Div:
      case BinOp::Mod: {
        // Floor division and modulo (Python's), so negative padded indices behave.
        llvm::Value *q = b_.CreateSDiv(a, c), *r = b_.CreateSRem(a, c);
        llvm::Value *zero = constLike(b_.getInt64(0), a);
        llvm::Value *adjust = b_.CreateAnd(b_.CreateICmpNE(r, zero), b_.CreateICmpSLT(b_.CreateXor(r, c), zero));
        if (e.binOp == BinOp::Div) return b_.CreateSub(q, b_.CreateZExt(adjust, typeLike(i64_, a)));
        return b_.CreateSelect(adjust, b_.CreateAdd(r, c), r);
      }
      case BinOp::Min: return b_.CreateSelect(b_.CreateICmpSLT(a, c), a, c);
      case BinOp::Max: return b_.CreateSelect(b_.CreateICmpSGT(a, c), a, c);
      case BinOp::Lt: return b_.CreateICmpSLT(a, c);
      case BinOp::Le: return b_.CreateICmpSLE(a, c);
      case BinOp::Gt: return b_.CreateICmpSGT(a, c);
      case BinOp::Ge: return b_.CreateICmpSGE(a, c);
      case BinOp::Eq: return b_.CreateICmpEQ(a, c);
      case BinOp::Ne: return b_.CreateICmpNE(a, c);
      case BinOp::And: return b_.CreateAnd(a, c);
      case BinOp::Or: return b_.CreateOr(a, c);
      default: break;
      }
    }
    internalError("operator {} on {}", binOpSpelling(e.binOp), typeName(t));
  }

  // splitmix64 finalizer, as compiler/Passes.h's randomUniform.
  llvm::Value *splitmix(llvm::Value *z) {
    z = b_.CreateAdd(z, b_.getInt64(0x9e3779b97f4a7c15ULL));
    z = b_.CreateMul(b_.CreateXor(z, b_.CreateLShr(z, 30)), b_.getInt64(0xbf58476d1ce4e5b9ULL));
    z = b_.CreateMul(b_.CreateXor(z, b_.CreateLShr(z, 27)), b_.getInt64(0x94d049bb133111ebULL));
    return b_.CreateXor(z, b_.CreateLShr(z, 31));
  }

  llvm::Value *randomExpr(const ExprNode &e) {
    llvm::Value *h = expr(e.args[0]);
    for (size_t i = 1; i < e.args.size(); ++i)
      h = splitmix(b_.CreateXor(h, b_.CreateMul(expr(e.args[i]), b_.getInt64(0x9e3779b97f4a7c15ULL))));
    return b_.CreateFMul(b_.CreateUIToFP(b_.CreateLShr(h, 40), fty_), floatConst(0x1.0p-24));
  }

  llvm::Value *callExpr(const ExprNode &e) {
    const Intrinsic f = ir::intrinsicOf(e);
    if (f == Intrinsic::Rand) return randomExpr(e);
    llvm::Value *x = expr(e.args[0]);
    switch (f) {
    case Intrinsic::Exp: return expOf(x);
    case Intrinsic::Log: return intrinsic(llvm::Intrinsic::log, {x});
    case Intrinsic::Sqrt: return intrinsic(llvm::Intrinsic::sqrt, {x});
    case Intrinsic::Rsqrt: return b_.CreateFDiv(floatLike(1, x), intrinsic(llvm::Intrinsic::sqrt, {x}));
    case Intrinsic::Abs: return intrinsic(llvm::Intrinsic::fabs, {x});
    case Intrinsic::Floor: return intrinsic(llvm::Intrinsic::floor, {x});
    case Intrinsic::Ceil: return intrinsic(llvm::Intrinsic::ceil, {x});
    case Intrinsic::Sin: return intrinsic(llvm::Intrinsic::sin, {x});
    case Intrinsic::Cos: return intrinsic(llvm::Intrinsic::cos, {x});
    case Intrinsic::Tanh: return libm("tanh", x);
    case Intrinsic::Sigmoid:
      return b_.CreateFDiv(floatConst(1), b_.CreateFAdd(floatConst(1), expOf(b_.CreateFNeg(x))));
    case Intrinsic::Relu: return b_.CreateSelect(b_.CreateFCmpOGT(x, floatLike(0, x)), x, floatLike(0, x));
    case Intrinsic::LeakyRelu: {
      llvm::Value *slope = expr(e.args[1]);
      harmonize(x, slope);
      return b_.CreateSelect(b_.CreateFCmpOGT(x, floatLike(0, x)), x, b_.CreateFMul(x, slope));
    }
    case Intrinsic::Rand: break;      // above
    case Intrinsic::Allreduce: break; // a collective kernel of its own, run by the runtime
    }
    internalError("no CPU code for function '{}'", e.name);
  }
};

} // namespace

llvm::Function *emitLLVMKernel(const ir::Kernel &kernel, const ir::ElementTypes &types, llvm::Module &module) {
  if (kernel.collective) return nullptr;
  return Emitter(kernel, types, module).run();
}

} // namespace enc::codegen
