# trmml — build, test, fixtures, benchmarks.
#
#   make               build/libtrmml.a and build/trmml (CUDA backend when nvcc is found)
#   make test          build and run every test; last line: N passed, N failed, N skipped
#   make DEBUG=1 test  the same under AddressSanitizer + UBSan (in build-debug/)
#   make test-matrix   the suite under each OpenBLAS kernel the CPU runs, the naive GEMM, 1 and 2
#                      threads (not in CI; docs/testing.md)
#   make fixtures      regenerate test/fixtures/*.bin with PyTorch (installs python3-torch)
#   make bench         benchmarks; writes docs/benchmarks.md (FILTER=NAME: one benchmark of
#                      `build/trmml bench --list`, its table replaced in docs/benchmarks.md)
#   make bench-alternate CASE="clip rn101 img 448 b8" [ROUNDS=5]
#                      one row, trmml and PyTorch by turns (docs/benchmarks-alternating.md)
#   make clean
# Options: CUDA=0 (no CUDA backend), OMP=0 (no OpenMP), MPI=0 (no MPI), NCCL=0 (no NCCL),
#          WERROR=0, THREADS=N (bench/test), DEVICE=auto|cpu|cuda[:N] (train), EXTRA_CFLAGS /
#          EXTRA_LDFLAGS (added to every C compile / every link: libraries outside /usr, e.g. the
#          Debian packages that scripts/gpu-check.sh --debs unpacks into a prefix; with
#          BLAS_INC=, BLAS_LIB= and NO_DEPS=1 to skip the check of /usr/include).

CC ?= cc
ifeq ($(CC),cc)
CC := gcc
endif
PYTHON ?= /usr/bin/python3
DEBUG ?= 0
WERROR ?= 1
OMP ?= 1

ifeq ($(DEBUG),1)
BUILD ?= build-debug
OPTFLAGS := -O0 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDSAN := -fsanitize=address,undefined
else
BUILD ?= build
# -fno-trapping-math: nothing here reads the floating-point exception flags, and without it GCC
# will not if-convert clamps (x < lo ? lo : x) in loops that also convert float to int, so the
# polynomial exp of QuickGELU (tensor/ops/elementwise.c) stayed scalar. It allows no reordering
# of arithmetic: results are unchanged.
# x86-64-v2 stays the baseline so that one binary runs on any x86-64 CPU: the hot loops carry
# their own AVX2 and AVX-512 variants, chosen at start-up (tensor/isa.h, docs/ops/isa.md).
OPTFLAGS := -O3 -march=x86-64-v2 -fno-trapping-math -g
LDSAN :=
endif

# make fuzz: libFuzzer build (clang, ASan+UBSan) of every fuzz/fuzz_<name>.c, each run briefly.
FUZZ ?= 0
ifeq ($(FUZZ),1)
OPTFLAGS := -O1 -g -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer
LDSAN := -fsanitize=fuzzer,address,undefined
endif

EXTRA_CFLAGS ?=
EXTRA_LDFLAGS ?=
CFLAGS := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter -I. $(OPTFLAGS) $(EXTRA_CFLAGS)
ifeq ($(WERROR),1)
CFLAGS += -Werror
endif
# zlib (gzip vocabulary, PNG), libjpeg-turbo, libpng, expat (VOC XML), yajl (every JSON written
# and read, tensor/json.h), cairo (every plot, trmml/plot.h; its font from fontconfig).
LDLIBS := -lm -lpthread -lz -ljpeg -lpng -lexpat -lyajl -lcairo -lfontconfig

# ---- detection ---------------------------------------------------------------------------
ifeq ($(OMP),1)
HAVE_OMP := $(shell echo 'int main(void){return 0;}' | $(CC) -fopenmp -x c - -o /dev/null 2>/dev/null && echo 1)
endif
ifeq ($(HAVE_OMP),1)
CFLAGS += -fopenmp
LDLIBS += -fopenmp
else
CFLAGS += -Wno-unknown-pragmas
endif

BLAS_INC := /usr/include/x86_64-linux-gnu/openblas-openmp
BLAS_LIB := /usr/lib/x86_64-linux-gnu/openblas-openmp
DEP_HEADERS := $(BLAS_INC)/cblas.h /usr/include/zlib.h /usr/include/jpeglib.h /usr/include/png.h \
	/usr/include/expat.h /usr/include/yajl/yajl_parse.h /usr/include/cairo/cairo.h \
	/usr/include/fontconfig/fontconfig.h \
	/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf
# Open MPI (tensor/dist.h, docs/distributed.md) unless MPI=0.
ifneq ($(MPI),0)
DEP_HEADERS += /usr/bin/mpicc
endif
MISSING_DEPS := $(filter-out $(wildcard $(DEP_HEADERS)),$(DEP_HEADERS))
ifneq ($(MISSING_DEPS),)
ifneq ($(NO_DEPS),1)
$(info missing $(MISSING_DEPS): running scripts/install-deps.sh)
DEPS_OUT := $(shell scripts/install-deps.sh 1>&2; echo $$?)
endif
endif
ifneq ($(wildcard $(BLAS_INC)/cblas.h),)
HAVE_BLAS := 1
CFLAGS += -DTRMML_OPENBLAS -I$(BLAS_INC)
LDLIBS += -L$(BLAS_LIB) -Wl,-rpath,$(BLAS_LIB) -lopenblas
endif

CUDA_HOME ?= /usr/local/cuda
NVCC ?= $(shell command -v nvcc 2>/dev/null || (test -x $(CUDA_HOME)/bin/nvcc && echo $(CUDA_HOME)/bin/nvcc))
ifeq ($(NVCC),)
CUDA ?= 0
else
CUDA ?= 1
endif
ifeq ($(CUDA),1)
# SASS for A100 (sm_80) and H100 (sm_90), plus compute_90 PTX that newer GPUs JIT-compile.
# cuBLAS is linked as a shared library (the toolkit ships no static libcublas); the rpath points
# at the toolkit, so the binary starts wherever it was built. cudart is static, and the driver
# (libcuda) is loaded only at the first CUDA call: a machine with no GPU and no driver runs the
# CPU backend (docs/cuda.md).
CFLAGS += -DTRMML_CUDA
NVCCFLAGS := -O3 -std=c++17 -I. -DTRMML_CUDA -Xcompiler -Wall,-Wno-unused-parameter \
	-gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
	-gencode arch=compute_90,code=compute_90
ifeq ($(WERROR),1)
NVCCFLAGS += -Werror all-warnings -Xcompiler -Werror
endif
ifeq ($(DEBUG),1)
# Synchronise after every launch so a fault is reported at the kernel that caused it.
NVCCFLAGS += -g -DTRMML_CUDA_DEBUG_SYNC
endif
LDLIBS += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublas -lcudart_static -ldl -lrt \
	-lstdc++
endif

# MPI (tensor/dist.h, docs/distributed.md): when mpicc is found, tensor/dist.c alone is compiled
# with the project's compiler and the include and link flags mpicc reports (so nothing else
# changes); MPI=0 builds the one-process dist layer. The binary calls MPI_Init only when mpirun
# or srun launched it.
MPICC ?= $(shell command -v mpicc 2>/dev/null)
ifeq ($(MPICC),)
MPI ?= 0
else
MPI ?= 1
endif
ifeq ($(MPI),1)
MPI_CFLAGS := -DTRMML_MPI $(shell $(MPICC) --showme:compile)
LDLIBS += $(shell $(MPICC) --showme:link)
endif

# NCCL (tensor/dist_nccl.h, docs/distributed.md "On several GPUs"): with CUDA and MPI on, when
# nccl.h is found (the toolkit's include folder, or Debian's libnccl-dev); NCCL=0 leaves it out.
# cuda/dist_nccl.cu is compiled and libnccl linked (shared, found through the toolkit's rpath
# or the system's; it loads the driver only when a communicator is made, so the binary still
# starts without a GPU); without NCCL, tensor/dist_nccl_off.c says it is not built.
NCCL_H := $(firstword $(wildcard $(CUDA_HOME)/include/nccl.h /usr/include/nccl.h))
ifeq ($(CUDA)$(MPI),11)
ifneq ($(NCCL_H),)
NCCL ?= 1
endif
endif
NCCL ?= 0
ifeq ($(NCCL),1)
ifneq ($(CUDA)$(MPI),11)
$(error NCCL=1 needs CUDA=1 and MPI=1 (CUDA=$(CUDA), MPI=$(MPI)))
endif
LDLIBS += -lnccl
endif

$(info trmml: CC=$(CC) OpenMP=$(if $(HAVE_OMP),on,off) OpenBLAS=$(if $(HAVE_BLAS),on,off) CUDA=$(if $(filter 1,$(CUDA)),on ($(NVCC)),off) MPI=$(if $(filter 1,$(MPI)),on ($(MPICC)),off) NCCL=$(if $(filter 1,$(NCCL)),on ($(NCCL_H)),off) DEBUG=$(DEBUG) -> $(BUILD)/)

# ---- sources -----------------------------------------------------------------------------
LIB_DIRS := tensor tensor/ops autograd nn clip trmml datasets
LIB_SRC := $(foreach d,$(LIB_DIRS),$(wildcard $(d)/*.c))
CUDA_SRC := $(if $(filter 1,$(CUDA)),$(wildcard cuda/*.cu))
# One of the two implementations of tensor/dist_nccl.h.
ifeq ($(NCCL),1)
LIB_SRC := $(filter-out tensor/dist_nccl_off.c,$(LIB_SRC))
else
CUDA_SRC := $(filter-out cuda/dist_nccl.cu,$(CUDA_SRC))
endif
TOOL_SRC := $(wildcard tools/*.c)
TEST_SRC := $(wildcard test/*.c)
FUZZ_SRC := $(wildcard fuzz/fuzz_*.c)
FUZZ_BIN := $(FUZZ_SRC:fuzz/%.c=$(BUILD)/fuzz/%)

# Objects live under $(BUILD)/obj/ so that folder names (trmml/) never collide with binaries.
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/obj/%.o) $(CUDA_SRC:%.cu=$(BUILD)/obj/%.cu.o)
TOOL_OBJ := $(TOOL_SRC:%.c=$(BUILD)/obj/%.o)
TEST_OBJ := $(TEST_SRC:%.c=$(BUILD)/obj/%.o)

.PHONY: all test fixtures bench bench-alternate clean deps train fuzz fuzz-run
all: $(BUILD)/libtrmml.a $(BUILD)/trmml

# The build configuration (CUDA on/off, flags) in a stamp file that changes only when the
# configuration does: switching CUDA=0 <-> CUDA=1 in one build folder rebuilds everything instead
# of linking objects and an archive made under the other setting.
CONFIG_STAMP := $(BUILD)/config.stamp
CONFIG_LINE := CUDA=$(CUDA) CC=$(CC) CFLAGS=$(CFLAGS) NVCCFLAGS=$(NVCCFLAGS) LDFLAGS=$(EXTRA_LDFLAGS)
.PHONY: FORCE
$(CONFIG_STAMP): FORCE
	@mkdir -p $(BUILD)
	@echo '$(CONFIG_LINE)' | cmp -s - $@ || echo '$(CONFIG_LINE)' > $@

$(BUILD)/obj/%.o: %.c $(CONFIG_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

# MPI on/off changes tensor/dist.o alone (and so the archive and the links): its own stamp.
MPI_STAMP := $(BUILD)/mpi.stamp
$(MPI_STAMP): FORCE
	@mkdir -p $(BUILD)
	@echo 'MPI=$(MPI) $(MPI_CFLAGS)' | cmp -s - $@ || echo 'MPI=$(MPI) $(MPI_CFLAGS)' > $@
$(BUILD)/obj/tensor/dist.o: CFLAGS += $(MPI_CFLAGS)
$(BUILD)/obj/tensor/dist.o: $(MPI_STAMP)

$(BUILD)/obj/%.cu.o: %.cu $(CONFIG_STAMP)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -MMD -MP -c $< -o $@

# NCCL on/off changes which implementation of tensor/dist_nccl.h the archive holds.
NCCL_STAMP := $(BUILD)/nccl.stamp
$(NCCL_STAMP): FORCE
	@mkdir -p $(BUILD)
	@echo 'NCCL=$(NCCL)' | cmp -s - $@ || echo 'NCCL=$(NCCL)' > $@

$(BUILD)/libtrmml.a: $(LIB_OBJ) $(CONFIG_STAMP) $(NCCL_STAMP)
	@rm -f $@
	ar rcs $@ $(LIB_OBJ)

# -rdynamic: the guard device's fault report (tensor/device_guard.c) names functions in its
# backtrace.
LDRDYNAMIC := -rdynamic

$(BUILD)/trmml: $(TOOL_OBJ) $(BUILD)/libtrmml.a
	$(CC) $(LDSAN) $(LDRDYNAMIC) -o $@ $(TOOL_OBJ) -Wl,--whole-archive $(BUILD)/libtrmml.a \
	  -Wl,--no-whole-archive $(EXTRA_LDFLAGS) $(LDLIBS)

$(BUILD)/test_trmml: $(TEST_OBJ) $(BUILD)/libtrmml.a
	$(CC) $(LDSAN) $(LDRDYNAMIC) -o $@ $(TEST_OBJ) -Wl,--whole-archive $(BUILD)/libtrmml.a \
	  -Wl,--no-whole-archive $(EXTRA_LDFLAGS) $(LDLIBS)

# Every SPEC §x / DECISION n citation, docs path, relative doc link and function named in
# docs/spec.md resolves (scripts/check-docs.sh); `make test` runs it first.
.PHONY: check-docs
check-docs:
	@scripts/check-docs.sh

# Tests run from the repository root (fixtures are read from test/fixtures/).
# FILTER=name runs the tests whose names contain it.
test: check-docs $(BUILD)/test_trmml $(BUILD)/trmml
	@OMP_NUM_THREADS=$${THREADS:-$${OMP_NUM_THREADS:-2}} ./$(BUILD)/test_trmml $(FILTER)

# The suite under every OpenBLAS core type this CPU can run, TRMML_GEMM=naive, 1 and 2 threads:
# one summary line per configuration (scripts/test-matrix.sh; docs/testing.md). Not in CI.
.PHONY: test-matrix
test-matrix: $(BUILD)/test_trmml $(BUILD)/trmml
	@scripts/test-matrix.sh ./$(BUILD)/test_trmml $(FILTER)

# Fuzzing: FUZZ_SECONDS per target (default 20); seeds from fuzz/corpus/<name>/ when present.
# Each fuzzer's output goes to build-fuzz/<name>.log (its last lines are printed); a crash is
# written to build-fuzz/crash-<name>-* and stops `make fuzz` with a non-zero status. The status
# tested is the fuzzer's own (a pipe into tail would test tail's). clang and its libFuzzer
# runtime come from scripts/install-deps.sh --fuzz.
fuzz:
	@scripts/install-deps.sh --fuzz
	$(MAKE) FUZZ=1 CC=clang CUDA=0 OMP=0 WERROR=0 BUILD=build-fuzz fuzz-run

fuzz-run: $(FUZZ_BIN)
	@for f in $(FUZZ_BIN); do n=$$(basename $$f); mkdir -p $(BUILD)/corpus/$$n; \
	  echo "== $$n ($${FUZZ_SECONDS:-20} s)"; \
	  if $$f -max_total_time=$${FUZZ_SECONDS:-20} -artifact_prefix=$(BUILD)/crash-$$n- \
	      $(BUILD)/corpus/$$n $$(test -d fuzz/corpus/$$n && echo fuzz/corpus/$$n) \
	      >$(BUILD)/$$n.log 2>&1; then tail -3 $(BUILD)/$$n.log; \
	  else st=$$?; tail -40 $(BUILD)/$$n.log; \
	    echo "make fuzz: $$n failed (exit $$st); log $(BUILD)/$$n.log" >&2; exit 1; fi; \
	done

$(BUILD)/fuzz/%: $(BUILD)/obj/fuzz/%.o $(BUILD)/libtrmml.a
	@mkdir -p $(dir $@)
	$(CC) $(LDSAN) -o $@ $< $(BUILD)/libtrmml.a $(EXTRA_LDFLAGS) $(LDLIBS)

# Regenerate the PyTorch reference fixtures (python3-torch from Debian; never needed at run time).
fixtures:
	@$(PYTHON) -c 'import torch' 2>/dev/null || scripts/install-deps.sh --torch
	@for s in scripts/fixtures_*.py; do echo "== $$s"; $(PYTHON) $$s || exit 1; done

bench: $(BUILD)/trmml
	@case '$(or $(DEVICE),auto)' in auto|cpu) ;; *) echo "make bench: DEVICE=$(DEVICE): the" \
	  "report compares with PyTorch on the CPU; GPU rows come from scripts/gpu-check.sh" \
	  "(docs/cuda.md, Validate on a GPU)" >&2; exit 2;; esac
	@$(PYTHON) -c 'import torch' 2>/dev/null || scripts/install-deps.sh --torch || true
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE BENCH_FILTER='$(FILTER)' \
	  scripts/bench.sh $(BUILD)/trmml $${THREADS:-2}

# Benchmarks measure the user's machine: OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE, which some
# environments set to force one OpenBLAS kernel, are unset for them (tests keep the environment).
# One row of the gemm/conv/clip tables, trmml and PyTorch by turns (the VM changes speed over
# minutes; a ratio within a round compares like with like): scripts/bench_alternate.py.
bench-alternate: $(BUILD)/trmml
	@if [ -z '$(CASE)' ]; then echo 'make bench-alternate: CASE="KEY" names a row of' \
	  'docs/benchmarks.md, e.g. CASE="clip rn101 img 448 b8"' >&2; exit 2; fi
	@$(PYTHON) -c 'import torch' 2>/dev/null || scripts/install-deps.sh --torch || true
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
	  $(PYTHON) scripts/bench_alternate.py --bin $(BUILD)/trmml --threads $${THREADS:-2} \
	  --case '$(CASE)' --rounds $${ROUNDS:-5}

deps:
	scripts/install-deps.sh

# Without DATASET: the embedded default (scripts/embedded.sh, docs/embedded.md): the synthetic
# world, a small CLIP pretrained on it, zero-shot CLIP and every method at RATIO, one table.
# The main job: make train DATASET=voc2007 RATIO=0.3 [METHOD=trmml|dualcoop|baseline|pvlr]
#   [DATA_ROOT=data] [CLIP_MODEL=models/RN101.pt] [DEVICE=auto] [SIZE=448] [RUN=runs/NAME]
#   [PRECISION=fp32|bf16] (the frozen towers' products; bf16 on CPUs with AVX512-BF16)
# Extracts the frozen image tower's features of both splits once (build/features/), then trains
# into runs/<dataset>-<method>-<ratio>/ (docs/training.md); a run that already has a checkpoint
# is resumed. Dataset roots under DATA_ROOT follow docs/datasets.md: voc2007/voc2012 DATA_ROOT
# (holding VOCdevkit/), coco2014 DATA_ROOT/coco, nuswide DATA_ROOT/nus-wide, vg200 DATA_ROOT/vg,
# cub DATA_ROOT/CUB_200_2011.
train: $(BUILD)/trmml
	@set -e; \
	dataset='$(DATASET)'; method='$(or $(METHOD),trmml)'; ratio='$(or $(RATIO),0.3)'; \
	data='$(or $(DATA_ROOT),data)'; model='$(or $(CLIP_MODEL),models/RN101.pt)'; \
	device='$(or $(DEVICE),auto)'; size='$(or $(SIZE),448)'; precision='$(or $(PRECISION),fp32)'; \
	if [ -z "$$dataset" ]; then \
	  TRMML=./$(BUILD)/trmml exec scripts/embedded.sh train --ratio "$$ratio" $(if $(METHOD),--methods "$(METHOD)"); fi; \
	case "$$dataset" in \
	  voc2007) root="$$data"; tr=trainval; te=test; look="$$data/VOCdevkit/VOC2007";; \
	  voc2012) root="$$data"; tr=train; te=val; look="$$data/VOCdevkit/VOC2012";; \
	  coco2014) root="$$data/coco"; tr=train; te=val; look="$$root/annotations";; \
	  nuswide) root="$$data/nus-wide"; tr=train; te=test; look="$$root";; \
	  vg200) root="$$data/vg"; tr=train; te=test; look="$$root";; \
	  cub) root="$$data/CUB_200_2011"; tr=train; te=test; look="$$root";; \
	  *) echo "make train: DATASET=$$dataset: expected voc2007, voc2012, coco2014, nuswide, vg200 or cub" >&2; exit 2;; \
	esac; \
	if [ ! -f "$$model" ]; then \
	  echo "make train: no CLIP checkpoint at $$model." >&2; \
	  echo "  Put OpenAI's RN101.pt there (or pass CLIP_MODEL=PATH); README \"Weights and datasets\"" >&2; \
	  echo "  and docs/clip.md say where to get it and how it is verified." >&2; exit 1; fi; \
	if [ ! -e "$$look" ]; then \
	  echo "make train: $$dataset not found: looked for $$look (DATA_ROOT=$$data)." >&2; \
	  echo "  docs/datasets.md says where to get $$dataset and the layout expected under $$root." >&2; exit 1; fi; \
	mkdir -p build/features; \
	resample=bicubic; [ "$$method" = dualcoop ] && resample=bilinear; \
	tag="$$dataset-$$(basename "$$model" | sed 's/\.[^.]*$$//')-$$size-$$resample"; \
	[ "$$precision" = fp32 ] || tag="$$tag-$$precision"; \
	for split in "$$tr" "$$te"; do \
	  feat="build/features/$$tag-$$split.feat"; \
	  if [ ! -f "$$feat" ]; then \
	    echo "== extracting $$dataset $$split features -> $$feat"; \
	    ./$(BUILD)/trmml extract --device "$$device" --model "$$model" --dataset "$$dataset" \
	      --root "$$root" --split "$$split" --size "$$size" --resample "$$resample" \
	      --precision "$$precision" --out "$$feat"; fi; \
	done; \
	run='$(or $(RUN),runs/$(DATASET)-$(or $(METHOD),trmml)-$(or $(RATIO),0.3))'; \
	if [ -f "$$run/checkpoint.safetensors" ]; then \
	  echo "== resuming $$run"; ./$(BUILD)/trmml train --device "$$device" --out "$$run" --resume; \
	else \
	  ./$(BUILD)/trmml train --device "$$device" --method "$$method" --dataset "$$dataset" \
	    --root "$$root" --ratio "$$ratio" --model "$$model" --out "$$run" --set "input_size=$$size" \
	    --precision "$$precision" \
	    --cached "build/features/$$tag-$$tr.feat" --cached-test "build/features/$$tag-$$te.feat"; \
	fi; \
	echo "== $$run: log.txt, metrics.jsonl, ap.csv, checkpoint.safetensors; evaluate with: build/trmml eval $$run"

# The embedded default's full grid: ratios x seeds x methods and TRM-ML's Table-3 components,
# summarised in docs/results.md and docs/results-map.png (hours on 2 cores; docs/embedded.md).
.PHONY: results
results: $(BUILD)/trmml
	TRMML=./$(BUILD)/trmml RESULTS_JOBS=$(or $(RESULTS_JOBS),1) scripts/embedded.sh results \
	  --ratios "$(or $(RESULTS_RATIOS),0.1 0.3 0.5 0.7 0.9)" --seeds "$(or $(RESULTS_SEEDS),0 1 2)"

clean:
	rm -rf build build-debug

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

# Full-size RN50/RN101 equivalence with PyTorch: random-weight TorchScript archives, references in
# float64, `trmml embed` checked against them (scripts/verify_clip.py). Needs torch; takes minutes;
# not part of `make test`.
.PHONY: verify-clip
verify-clip: $(BUILD)/trmml
	@$(PYTHON) -c 'import torch' 2>/dev/null || { echo "make verify-clip: $(PYTHON) cannot import torch (scripts/install-deps.sh --torch)" >&2; exit 1; }
	$(PYTHON) scripts/verify_clip.py --trmml $(BUILD)/trmml --threads $${THREADS:-2}
