# Deployment targets, included by the root Makefile (`-include infra/infra.mk`).
#
#   make build [ARCH=arm64|x86_64]   Lambda zips for both functions under target/lambda/
#   make lint-infra                  cfn-lint on infra/template.yaml
#   make test-infra                  cfn-lint with no error and no warning + the template structure test
#   make sam-build [ARCH=...]        sam validate --lint + sam build, offline, no AWS credentials
#   make deploy [ARCH=...]           sam build + sam deploy: non-interactive with infra/samconfig.toml,
#                                    --guided (which writes it) only when it does not exist yet; then
#                                    the stack policy that keeps the database (infra/stack-policy.json)
#
# Everything here is offline except `deploy` (AWS) and the one download of the CA bundles.

INFRA_DIR := infra
# sam deploy's saved answers (infra/.gitignore); SAM_CONFIG_ENV picks a section, e.g. staging.
SAM_CONFIG := $(INFRA_DIR)/samconfig.toml
SAM_CONFIG_ENV ?= default
# ARCH defaults to the Architecture saved there by the first deploy, else arm64.
SAVED_ARCH := $(shell [ -f $(SAM_CONFIG) ] && python3 $(INFRA_DIR)/samconfig.py arch $(SAM_CONFIG) $(SAM_CONFIG_ENV) 2>/dev/null)
ARCH ?= $(if $(SAVED_ARCH),$(SAVED_ARCH),arm64)
TEMPLATE := $(INFRA_DIR)/template.yaml
LAMBDA_BINS := items-api rotation
# OpenSSL is built from source and linked statically in Lambda builds (design §6).
LAMBDA_FEATURES := items-api/vendored-openssl,rotation/vendored-openssl

# The RDS CA bundle ships as a Lambda layer (docs/deployment.md, "The RDS CA bundle"); the template's
# RdsCaBundleLayer packages this directory.
RDS_CA_PEM := target/rds-ca-bundle/global-bundle.pem

SAM_VENV := .venv-sam
SAM := $(SAM_VENV)/bin/sam
SAM_CLI_VERSION := 1.170.0

ifeq ($(ARCH),arm64)
  CARGO_LAMBDA_ARCH := --arm64
  RUST_TARGET := aarch64-unknown-linux-gnu
else ifeq ($(ARCH),x86_64)
  CARGO_LAMBDA_ARCH := --x86-64
  RUST_TARGET := x86_64-unknown-linux-gnu
else
  $(error ARCH must be arm64 or x86_64, not '$(ARCH)')
endif

.PHONY: build check-rust-target rds-ca-bundle lint-infra test-infra deploy sam-cli sam-build

check-rust-target:
	@if ! rustup target list --installed 2>/dev/null | grep -qx '$(RUST_TARGET)'; then \
	  echo "build: the Rust target $(RUST_TARGET) (ARCH=$(ARCH)) is not installed." >&2; \
	  if [ '$(ARCH)' = arm64 ]; then \
	    echo "build: install it with:  rustup target add aarch64-unknown-linux-gnu" >&2; \
	    echo "build: or build for x86_64 instead:  make build ARCH=x86_64  (and deploy with Architecture=x86_64)" >&2; \
	  else \
	    echo "build: install it with:  rustup target add $(RUST_TARGET)" >&2; \
	  fi; \
	  exit 1; \
	fi

build: check-rust-target
	@command -v cargo-lambda >/dev/null || scripts/deps.sh
	cargo lambda build --release --output-format zip $(CARGO_LAMBDA_ARCH) \
	  $(foreach b,$(LAMBDA_BINS),-p $(b)) --features $(LAMBDA_FEATURES)
	@# cargo-lambda builds with panic=abort unless the profile says otherwise: make sure it did not
	@# (the unwinder's message is linked only with panic=unwind).
	@for b in $(LAMBDA_BINS); do \
	  python3 -c 'import sys, zipfile; sys.exit(b"cannot catch foreign exceptions" not in zipfile.ZipFile(sys.argv[1]).read("bootstrap"))' \
	    target/lambda/$$b/bootstrap.zip || \
	  { echo "build: target/lambda/$$b/bootstrap was built with panic=abort; keep panic = \"unwind\" in [profile.release]" >&2; exit 1; }; \
	done
	@$(INFRA_DIR)/rds-ca-bundle.sh || \
	  echo "build: WARNING: no RDS CA bundle ($(RDS_CA_PEM)), so no layer zip; the function zips are complete (the bundle ships as a layer), and 'make deploy' fetches it" >&2
	@echo "build: ARCH=$(ARCH) artifacts:"
	@for b in $(LAMBDA_BINS); do ls -l target/lambda/$$b/bootstrap.zip | awk '{printf "  %-40s %9d bytes\n", $$9, $$5}'; done
	@[ ! -f target/lambda/rds-ca-bundle/layer.zip ] || ls -l target/lambda/rds-ca-bundle/layer.zip | awk '{printf "  %-40s %9d bytes\n", $$9, $$5}'

# ------------------------------------------------------------------ template checks (offline)

# cfn-lint's exit code is a bitmask (2 error, 4 warning, 8 info); warnings fail here too.
lint-infra:
	@scripts/deps.sh
	cfn-lint --non-zero-exit-code warning $(TEMPLATE)

test-infra: lint-infra
	python3 -m unittest discover -s $(INFRA_DIR)/tests -v

# ------------------------------------------------------------------ deploy (needs AWS credentials)

$(SAM):
	@echo "deploy: installing aws-sam-cli $(SAM_CLI_VERSION) into $(SAM_VENV)"
	python3 -m venv $(SAM_VENV)
	@echo '*' > $(SAM_VENV)/.gitignore
	$(SAM_VENV)/bin/pip install -q --disable-pip-version-check 'aws-sam-cli==$(SAM_CLI_VERSION)'

sam-cli: $(SAM)

rds-ca-bundle:
	@$(INFRA_DIR)/rds-ca-bundle.sh || \
	  { echo "rds-ca-bundle: the functions verify the database (and RDS Proxy) certificates with target/rds-ca-bundle/*.pem; cannot deploy without them" >&2; exit 1; }

# sam build runs `cargo lambda build --release [--arm64] --bin <name>` per function in the workspace
# root (SAM's Rust builder builds in source, into the workspace target/), with the features and
# packages of CargoLambda.toml; the Architecture given here must match the one deployed.
SAM_ENV := SAM_CLI_TELEMETRY=0
SAM_BUILD = cd $(INFRA_DIR) && $(SAM_ENV) $(CURDIR)/$(SAM) build --parameter-overrides Architecture=$(ARCH)

# The build check CI can run: no AWS credentials, no prompt, no network but crates.io (and none once
# target/ is warm). Without the CA bundles the layer is built empty, with a warning: deploy fetches them.
sam-build: check-rust-target sam-cli
	@command -v cargo-lambda >/dev/null || scripts/deps.sh
	@[ -s $(RDS_CA_PEM) ] || { mkdir -p $(dir $(RDS_CA_PEM)); \
	  echo "sam-build: WARNING: no $(RDS_CA_PEM): the layer is built without it (make deploy fetches it)" >&2; }
	cd $(INFRA_DIR) && $(SAM_ENV) $(CURDIR)/$(SAM) validate --lint -t template.yaml
	$(SAM_BUILD)

# With infra/samconfig.toml: sam deploy without a prompt (CONFIRM=1 shows the change set and asks
# first). Without it: sam deploy --guided, which asks for everything and saves the answers there.
deploy: check-rust-target rds-ca-bundle sam-cli
	@command -v cargo-lambda >/dev/null || scripts/deps.sh
	@[ ! -f $(SAM_CONFIG) ] || python3 $(INFRA_DIR)/samconfig.py check $(SAM_CONFIG) $(SAM_CONFIG_ENV) $(ARCH)
	$(SAM_BUILD)
	@if [ -f $(SAM_CONFIG) ]; then \
	  echo "deploy: $(SAM_CONFIG) [$(SAM_CONFIG_ENV)]: sam deploy$(if $(CONFIRM), (confirming the change set), without prompts)"; \
	  cd $(INFRA_DIR) && $(SAM_ENV) $(CURDIR)/$(SAM) deploy --config-env $(SAM_CONFIG_ENV) --no-fail-on-empty-changeset \
	    $(if $(CONFIRM),--confirm-changeset,--no-confirm-changeset); \
	else \
	  echo "deploy: no $(SAM_CONFIG) yet: sam deploy --guided; answer y to 'Save arguments to configuration file'"; \
	  cd $(INFRA_DIR) && $(SAM_ENV) $(CURDIR)/$(SAM) deploy --guided --parameter-overrides Architecture=$(ARCH); \
	fi
	@# Every deploy (re)sets the stack policy that refuses to delete or replace the database.
	@if [ -f $(SAM_CONFIG) ]; then \
	  $(SAM_VENV)/bin/python $(INFRA_DIR)/stack_policy.py $(SAM_CONFIG) $(SAM_CONFIG_ENV) $(INFRA_DIR)/stack-policy.json; \
	else \
	  echo "deploy: WARNING: no $(SAM_CONFIG), so no stack policy was set; protect the database with:" >&2; \
	  echo "  aws cloudformation set-stack-policy --stack-name <stack> --stack-policy-body file://$(INFRA_DIR)/stack-policy.json" >&2; \
	fi
