// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

/// @title SLACompensation
/// @author slamon
/// @notice Two-sided SLA compensation pool settled by k-of-n EIP-712 signed SLI reports.
/// @dev A provider registers an SLA (objective, period schedule, signer set and quorum, payout
///      rule, beneficiaries, asset) and funds a pool. Authorised signers (slamon daemons) sign one
///      `Report` per closed period. Reports are accepted one signer at a time, either batched by a
///      relayer (k signatures in one transaction) or sent by each daemon independently; the period
///      settles as soon as `quorum` distinct signers have reported. At settlement the contract takes
///      the (lower) median SLI, decides the breach against its stored objective, computes the payout
///      and credits it with O(1) storage writes (cumulative per-weight accounting). Beneficiaries and
///      the provider's team pull their funds with `claim` / `claimTeam`.
///
///      Storage layout is designed for gas: one fresh slot per settled period (the evidence root),
///      period summaries packed 6 per slot, pool and accumulator packed in one slot, immutable SLA
///      parameters (core, policy, payout rule, met reward, signers, tiers) stored as the code of a
///      per-SLA data contract and read with one EXTCODECOPY.
contract SLACompensation {
    // ------------------------------------------------------------------------------------------
    // Types
    // ------------------------------------------------------------------------------------------

    /// @notice The signed SLI report of one signer for one period (EIP-712 primary type).
    /// @dev Field order and types are the EIP-712 struct; do not change without a version bump.
    struct Report {
        bytes32 slaId;
        uint64 periodId;
        uint64 periodStart;
        uint64 periodEnd;
        uint32 sliPpm;
        uint32 sloPpm;
        uint64 good;
        uint64 valid;
        uint64 noData;
        bool breached;
        bytes32 evidenceRoot;
        bytes32 policyDigest;
        uint64 issuedAt;
    }

    /// @notice One severity tier: if the settled SLI is below `sliBelowPpm`, pay `amount`.
    struct Tier {
        uint32 sliBelowPpm;
        uint96 amount;
    }

    /// @notice Registration parameters of an SLA.
    /// @param slaId Identifier, chosen by the provider, unique in this contract.
    /// @param objectivePpm Service level objective in parts per million (breach iff SLI < objective).
    /// @param scheduleStart Start of period 0 (unix seconds); ignored when `boundaries` is non-empty.
    /// @param periodLength Length of every period in seconds; ignored when `boundaries` is non-empty.
    /// @param periodCount Number of periods of the fixed schedule (> 0); ignored with `boundaries`.
    /// @param boundaries Explicit strictly increasing period boundaries (calendar months...):
    ///        period i is [boundaries[i], boundaries[i+1]). Empty for a fixed-length schedule.
    /// @param settlementWindow Seconds after a period ends during which reports are accepted;
    ///        must be > 0 and <= the shortest period.
    /// @param signers Authorised report signers (1..16, distinct, non-zero).
    /// @param quorum Number of distinct signers needed to settle a period (1..10, <= signers).
    /// @param minSamples Minimum `valid` event count a report must carry.
    /// @param policyDigest Digest of the measurement policy; every report must carry it.
    /// @param ratePerPpm Linear rule: payout per ppm of shortfall (used when `tiers` is empty).
    /// @param tiers Severity tiers (1..4) ordered by strictly decreasing `sliBelowPpm` (first one
    ///        <= objective) and non-decreasing amount; the deepest tier matched pays. Empty = linear.
    /// @param maxPayoutPerPeriod Cap on the compensation of one breached period (> 0).
    /// @param metReward Reward credited to `team` for a met period (0 = none).
    /// @param team Address that may claim met-period rewards.
    /// @param asset address(0) for native ETH, else an ERC-20 token.
    /// @param beneficiaries Compensation recipients (1..64, distinct, non-zero).
    /// @param weights Their weights (> 0); a payout is split pro rata.
    struct SLAParams {
        bytes32 slaId;
        uint32 objectivePpm;
        uint64 scheduleStart;
        uint32 periodLength;
        uint32 periodCount;
        uint64[] boundaries;
        uint32 settlementWindow;
        address[] signers;
        uint8 quorum;
        uint32 minSamples;
        bytes32 policyDigest;
        uint96 ratePerPpm;
        Tier[] tiers;
        uint96 maxPayoutPerPeriod;
        uint96 metReward;
        address team;
        address asset;
        address[] beneficiaries;
        uint64[] weights;
    }

    /// @dev Word 0 of the SLA's parameter blob: everything the report checks need.
    struct Core {
        uint64 scheduleStart; // fixed schedule start (or first boundary)
        uint32 periodLength; // 0 => explicit boundaries
        uint32 periodCount;
        uint32 settlementWindow;
        uint32 objectivePpm;
        uint32 minSamples;
        uint8 quorum;
        uint8 signerCount;
        uint8 tierCount; // 0 => linear rule
        bool exists;
    }

    /// @dev Word 2 of the parameter blob: payout rule. Meta (storage): who is who.
    struct Payout {
        uint96 ratePerPpm;
        uint96 maxPayoutPerPeriod;
        uint64 totalWeight;
    }

    struct Meta {
        address provider;
        uint96 metReward;
        address team;
        address asset;
    }

    /// @dev Pool (unreserved funds) and cumulative payout per weight unit (scaled by ACC_SCALE).
    struct Ledger {
        uint96 pool;
        uint160 accPerWeight;
    }

    /// @dev A beneficiary: weight and what it has already been paid.
    struct Beneficiary {
        uint64 weight;
        uint192 claimed;
    }

    /// @notice Read-only view of an SLA.
    struct SLAView {
        address provider;
        address team;
        address asset;
        uint32 objectivePpm;
        uint64 scheduleStart;
        uint32 periodLength;
        uint32 periodCount;
        uint32 settlementWindow;
        uint8 quorum;
        address[] signers;
        uint32 minSamples;
        bytes32 policyDigest;
        uint96 ratePerPpm;
        Tier[] tiers;
        uint96 maxPayoutPerPeriod;
        uint96 metReward;
        uint64 totalWeight;
        uint96 pool;
        uint256 teamOwed;
    }

    /// @notice Read-only view of one period.
    struct PeriodView {
        uint64 start;
        uint64 end;
        uint64 deadline;
        bool settled;
        bool breached;
        uint32 sliPpm;
        uint16 reportedMask;
        uint8 reportCount;
        bytes32 evidenceRoot;
    }

    // ------------------------------------------------------------------------------------------
    // Constants
    // ------------------------------------------------------------------------------------------

    /// @notice EIP-712 type hash of `Report`.
    bytes32 public constant REPORT_TYPEHASH = keccak256(
        "Report(bytes32 slaId,uint64 periodId,uint64 periodStart,uint64 periodEnd,uint32 sliPpm,"
        "uint32 sloPpm,uint64 good,uint64 valid,uint64 noData,bool breached,bytes32 evidenceRoot,"
        "bytes32 policyDigest,uint64 issuedAt)"
    );
    bytes32 private constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 private constant NAME_HASH = keccak256("slamon");
    bytes32 private constant VERSION_HASH = keccak256("1");
    /// @dev secp256k1n / 2: signatures with a larger s are malleable twins and rejected.
    uint256 private constant HALF_N = 0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0;

    /// @notice Parts per million of a perfect SLI.
    uint32 public constant PPM = 1_000_000;
    /// @notice Maximum number of signers of an SLA (the reported set is a 16-bit mask).
    uint256 public constant MAX_SIGNERS = 16;
    /// @notice Maximum quorum (pending reports are packed 10 per slot).
    uint256 public constant MAX_QUORUM = 10;
    uint256 public constant MAX_TIERS = 4;
    uint256 public constant MAX_BENEFICIARIES = 64;
    uint256 private constant ACC_SCALE = 1e12;

    // Period summary lane (42 bits, 6 per slot): sli 20 | mask 16 | medianIdx 4 | settled | breached
    uint256 private constant LANE_BITS = 42;
    uint256 private constant LANES = 6;
    uint256 private constant LANE_MASK = (1 << 42) - 1;
    uint256 private constant SETTLED_BIT = 1 << 40;
    uint256 private constant BREACHED_BIT = 1 << 41;

    // ------------------------------------------------------------------------------------------
    // Immutable SLA parameters (the parameter blob)
    // ------------------------------------------------------------------------------------------
    // The immutable parameters read at settlement (core, policy digest, payout rule, met reward,
    // signers, tiers) are stored as the runtime code of a data contract created at registration,
    // and read with ONE EXTCODECOPY (one cold account access, 2 600 gas) instead of one cold
    // SLOAD (2 100 gas) each. The data contract's address is derived from the SLA id alone
    // (CREATE3 pattern): this contract CREATE2s a fixed 16-byte proxy with salt = slaId, and the
    // proxy CREATEs the data contract (its first and only creation, nonce 1). Nobody else can
    // create code at that address, and the code has no way to change: it starts with STOP, has
    // no SELFDESTRUCT and is never called. An unregistered id reads as all zeros (exists = false).
    //
    // Blob layout (the data contract's code is 0x00 ++ blob):
    //   [0, 32)    Core, packed like the struct (low bits first)
    //   [32, 64)   policy digest
    //   [64, 96)   Payout: ratePerPpm 96 | maxPayoutPerPeriod 96 | totalWeight 64 (low bits first)
    //   [96, 128)  metReward (uint96, right-aligned)
    //   then signerCount addresses of 20 bytes, then tierCount tiers of 16 bytes
    //   (sliBelowPpm uint32 | amount uint96, big-endian).

    /// @dev Solady's CREATE3 proxy: CREATEs its calldata as init code.
    bytes private constant PROXY_INITCODE = hex"67363d3d37363d34f03d5260086018f3";
    bytes32 private constant PROXY_INITCODE_HASH = keccak256(PROXY_INITCODE);
    uint256 private constant BLOB_HEADER = 128;
    /// @dev Bytes copied to memory: header + 16 signers + 4 tiers, rounded up to whole words.
    uint256 private constant BLOB_COPY = 544;

    // ------------------------------------------------------------------------------------------
    // Storage
    // ------------------------------------------------------------------------------------------

    uint256 private immutable _cachedChainId;
    bytes32 private immutable _cachedDomainSeparator;

    /// @dev provider != address(0) <=> the SLA is registered.
    mapping(bytes32 slaId => Meta) private _meta;
    mapping(bytes32 slaId => Ledger) private _ledger;
    mapping(bytes32 slaId => uint256) private _teamOwed;
    mapping(bytes32 slaId => uint64[]) private _boundaries;
    mapping(bytes32 slaId => mapping(address account => Beneficiary)) private _beneficiaries;
    /// @dev Packed period summaries, 6 lanes per slot, keyed by periodId / 6.
    mapping(bytes32 slaId => mapping(uint256 group => uint256)) private _summaries;
    /// @dev Evidence root of each accepted report that needed storing, by signer index.
    ///      The settled period's root is the one of its median signer.
    mapping(bytes32 slaId => mapping(uint64 periodId => mapping(uint256 signerIdx => bytes32)))
        private _roots;
    /// @dev Reports waiting for quorum: up to 10 entries of 24 bits (sli 20 | signerIdx 4).
    mapping(bytes32 slaId => mapping(uint64 periodId => uint256)) private _pending;

    bool private transient _locked;

    // ------------------------------------------------------------------------------------------
    // Events
    // ------------------------------------------------------------------------------------------

    /// @notice An SLA was registered.
    event SLARegistered(
        bytes32 indexed slaId,
        address indexed provider,
        address asset,
        uint32 objectivePpm,
        uint8 quorum,
        address[] signers,
        bytes32 policyDigest
    );
    /// @notice A beneficiary was added with `weight` at registration.
    event BeneficiaryAdded(bytes32 indexed slaId, address indexed account, uint64 weight);
    /// @notice The pool received `amount` from `from`.
    event PoolFunded(bytes32 indexed slaId, address indexed from, uint256 amount);
    /// @notice The provider withdrew `amount` to `to`.
    event PoolWithdrawn(bytes32 indexed slaId, address indexed to, uint256 amount);
    /// @notice A signer's report was accepted (counted towards the quorum).
    event ReportAccepted(
        bytes32 indexed slaId, uint64 indexed periodId, address indexed signer, uint32 sliPpm
    );
    /// @notice Reports arrived for an already settled period and were ignored (no state change).
    event LateReportsIgnored(bytes32 indexed slaId, uint64 indexed periodId, uint256 count);
    /// @notice A period was settled. `compensation` goes to the beneficiaries (0 when met).
    event PeriodSettled(
        bytes32 indexed slaId,
        uint64 indexed periodId,
        uint32 sliPpm,
        bool breached,
        uint256 compensation,
        bytes32 evidenceRoot
    );
    /// @notice A met period credited `amount` to the provider's team.
    event TeamRewarded(bytes32 indexed slaId, uint64 indexed periodId, uint256 amount);
    /// @notice A beneficiary claimed `amount`.
    event Claimed(bytes32 indexed slaId, address indexed account, uint256 amount);
    /// @notice The team claimed `amount`.
    event TeamClaimed(bytes32 indexed slaId, address indexed team, uint256 amount);

    // ------------------------------------------------------------------------------------------
    // Errors
    // ------------------------------------------------------------------------------------------

    error SLAExists(bytes32 slaId);
    error UnknownSLA(bytes32 slaId);
    error InvalidParams(string reason);
    error NotProvider();
    error NotTeam();
    error EmptyBatch();
    error LengthMismatch();
    error MixedBatch();
    error UnknownPeriod(uint64 periodId);
    error PeriodMismatch(uint64 periodId);
    error PeriodNotFinished(uint64 periodId, uint64 periodEnd);
    error SettlementWindowClosed(uint64 periodId, uint64 deadline);
    error PolicyMismatch(bytes32 expected, bytes32 got);
    error ObjectiveMismatch(uint32 expected, uint32 got);
    error InconsistentReport();
    error TooFewSamples(uint64 valid, uint32 minimum);
    error BadSignature();
    error HighS();
    error NotSigner(address recovered);
    error DuplicateSigner(address signer);
    error AlreadyReported(address signer);
    error SettlementPending(uint64 periodId);
    error InsufficientWithdrawable(uint256 requested, uint256 available);
    error BadValue();
    error NothingToClaim();
    error TransferFailed();
    error Reentrancy();

    // ------------------------------------------------------------------------------------------
    // Construction, modifiers
    // ------------------------------------------------------------------------------------------

    constructor() {
        _cachedChainId = block.chainid;
        _cachedDomainSeparator = _buildDomainSeparator();
    }

    modifier nonReentrant() {
        if (_locked) revert Reentrancy();
        _locked = true;
        _;
        _locked = false;
    }

    // ------------------------------------------------------------------------------------------
    // Registration and pool
    // ------------------------------------------------------------------------------------------

    /// @notice Register an SLA; the caller becomes its provider. Parameters are immutable.
    /// @param p The registration parameters (see `SLAParams`).
    function registerSLA(SLAParams calldata p) external {
        bytes32 id = p.slaId;
        if (_meta[id].provider != address(0)) revert SLAExists(id);
        if (p.objectivePpm == 0 || p.objectivePpm > PPM) revert InvalidParams("objective");
        uint256 n = p.signers.length;
        if (n == 0 || n > MAX_SIGNERS) revert InvalidParams("signers");
        if (p.quorum == 0 || p.quorum > n || p.quorum > MAX_QUORUM) revert InvalidParams("quorum");
        if (p.minSamples == 0) revert InvalidParams("minSamples");
        if (p.maxPayoutPerPeriod == 0) revert InvalidParams("cap");
        if (p.team == address(0) && p.metReward != 0) revert InvalidParams("team");
        if (p.settlementWindow == 0) revert InvalidParams("settlementWindow");

        uint64 start;
        uint32 length;
        uint32 count;
        uint256 nb = p.boundaries.length;
        if (nb == 0) {
            if (p.periodLength == 0 || p.periodCount == 0) revert InvalidParams("schedule");
            if (p.settlementWindow > p.periodLength) revert InvalidParams("settlementWindow");
            if (uint256(p.scheduleStart) + uint256(p.periodLength) * p.periodCount > type(uint64).max) {
                revert InvalidParams("schedule");
            }
            start = p.scheduleStart;
            length = p.periodLength;
            count = p.periodCount;
        } else {
            if (nb < 2 || nb - 1 > type(uint32).max) revert InvalidParams("boundaries");
            uint64[] storage b = _boundaries[id];
            b.push(p.boundaries[0]);
            for (uint256 i = 1; i < nb; ++i) {
                uint64 prev = p.boundaries[i - 1];
                uint64 cur = p.boundaries[i];
                if (cur <= prev || cur - prev < p.settlementWindow) revert InvalidParams("boundaries");
                b.push(cur);
            }
            start = p.boundaries[0];
            count = uint32(nb - 1);
        }

        uint256 nt = p.tiers.length;
        if (nt > MAX_TIERS) revert InvalidParams("tiers");
        bytes memory blob = new bytes(BLOB_HEADER + 20 * n + 16 * nt);
        for (uint256 i = 0; i < nt; ++i) {
            Tier calldata t = p.tiers[i];
            if (i == 0 ? t.sliBelowPpm > p.objectivePpm : t.sliBelowPpm >= p.tiers[i - 1].sliBelowPpm) {
                revert InvalidParams("tiers");
            }
            if (i > 0 && t.amount < p.tiers[i - 1].amount) revert InvalidParams("tiers");
            uint256 packed = (uint256(t.sliBelowPpm) << 224) | (uint256(t.amount) << 128);
            uint256 off = BLOB_HEADER + 20 * n + 16 * i;
            assembly ("memory-safe") {
                // 16 bytes written, the rest of the word is beyond them or rewritten next
                let ptr := add(add(blob, 32), off)
                mstore(ptr, or(packed, and(mload(ptr), 0xffffffffffffffffffffffffffffffff)))
            }
        }

        for (uint256 i = 0; i < n; ++i) {
            address s = p.signers[i];
            if (s == address(0)) revert InvalidParams("signer");
            for (uint256 j = 0; j < i; ++j) {
                if (p.signers[j] == s) revert InvalidParams("signer");
            }
            uint256 off = BLOB_HEADER + 20 * i;
            assembly ("memory-safe") {
                let ptr := add(add(blob, 32), off)
                mstore(ptr, or(shl(96, s), and(mload(ptr), 0xffffffffffffffffffffffff)))
            }
        }

        uint256 nben = p.beneficiaries.length;
        if (nben == 0 || nben > MAX_BENEFICIARIES || nben != p.weights.length) {
            revert InvalidParams("beneficiaries");
        }
        uint256 total;
        for (uint256 i = 0; i < nben; ++i) {
            address a = p.beneficiaries[i];
            uint64 w = p.weights[i];
            if (a == address(0) || w == 0 || _beneficiaries[id][a].weight != 0) {
                revert InvalidParams("beneficiary");
            }
            _beneficiaries[id][a].weight = w;
            total += w;
            emit BeneficiaryAdded(id, a, w);
        }
        if (total > type(uint64).max) revert InvalidParams("weights");

        uint256 core = uint256(start) | (uint256(length) << 64) | (uint256(count) << 96)
            | (uint256(p.settlementWindow) << 128) | (uint256(p.objectivePpm) << 160)
            | (uint256(p.minSamples) << 192) | (uint256(p.quorum) << 224) | (n << 232) | (nt << 240)
            | (uint256(1) << 248);
        uint256 payout =
            uint256(p.ratePerPpm) | (uint256(p.maxPayoutPerPeriod) << 96) | (total << 192);
        bytes32 policy = p.policyDigest;
        uint256 metReward = p.metReward;
        assembly ("memory-safe") {
            mstore(add(blob, 32), core)
            mstore(add(blob, 64), policy)
            mstore(add(blob, 96), payout)
            mstore(add(blob, 128), metReward)
        }
        _deployParams(id, blob);
        _meta[id] = Meta({provider: msg.sender, metReward: p.metReward, team: p.team, asset: p.asset});
        emit SLARegistered(id, msg.sender, p.asset, p.objectivePpm, p.quorum, p.signers, p.policyDigest);
    }

    /// @notice Add `amount` to the pool of `slaId` (anyone may fund).
    /// @dev Native ETH: send exactly `amount` as value. ERC-20: approve first; the amount
    ///      actually received (balance difference) is credited.
    function fund(bytes32 slaId, uint256 amount) external payable nonReentrant {
        if (_meta[slaId].provider == address(0)) revert UnknownSLA(slaId);
        address asset = _meta[slaId].asset;
        uint256 received;
        if (asset == address(0)) {
            if (msg.value != amount) revert BadValue();
            received = amount;
        } else {
            if (msg.value != 0) revert BadValue();
            uint256 before = _balanceOf(asset);
            _safeTransferFrom(asset, msg.sender, amount);
            received = _balanceOf(asset) - before;
        }
        Ledger storage l = _ledger[slaId];
        uint256 pool = uint256(l.pool) + received;
        if (pool > type(uint96).max) revert BadValue();
        l.pool = uint96(pool);
        emit PoolFunded(slaId, msg.sender, received);
    }

    /// @notice Withdraw `amount` of unowed funds to `to` (provider only).
    /// @dev Rule: nothing can be withdrawn while a finished period awaits settlement (it is
    ///      unsettled and its settlement window is open); otherwise, while the SLA still has a
    ///      period running or to come, max(maxPayoutPerPeriod, metReward) stays locked. Amounts
    ///      credited to beneficiaries or the team at settlement are never part of the pool.
    function withdraw(bytes32 slaId, uint256 amount, address to) external nonReentrant {
        if (_meta[slaId].provider != msg.sender) revert NotProvider();
        if (to == address(0)) revert InvalidParams("to");
        uint256 available = withdrawable(slaId);
        if (amount > available) revert InsufficientWithdrawable(amount, available);
        _ledger[slaId].pool -= uint96(amount);
        emit PoolWithdrawn(slaId, to, amount);
        _pay(_meta[slaId].asset, to, amount);
    }

    // ------------------------------------------------------------------------------------------
    // Reports and settlement
    // ------------------------------------------------------------------------------------------

    /// @notice Submit signed reports for ONE period of ONE SLA.
    /// @dev Each report is checked (schedule, finished, window, policy, objective, internal
    ///      consistency, sample count), its EIP-712 signature verified (low-s, v in {27,28}, signer
    ///      in the set, not already counted). Reports accumulate across calls; the period settles
    ///      when `quorum` signers have reported. If the period is already settled, nothing is
    ///      checked or changed: `LateReportsIgnored` is emitted and the call succeeds.
    ///      No external call is made (ecrecover is a precompile) and no funds move, so no
    ///      reentrancy guard is needed here.
    /// @param reports The reports (all with the same slaId and periodId).
    /// @param signatures 65-byte signatures (r, s, v), one per report.
    function submitReports(Report[] calldata reports, bytes[] calldata signatures) external {
        uint256 m = reports.length;
        if (m == 0) revert EmptyBatch();
        if (m != signatures.length) revert LengthMismatch();
        Report calldata r0 = reports[0];
        bytes32 slaId = r0.slaId;
        uint64 periodId = r0.periodId;
        uint256 params = _params(slaId);
        Core memory c = _coreOf(params);
        if (!c.exists) revert UnknownSLA(slaId);

        uint256 group = periodId / LANES;
        uint256 shift = (periodId % LANES) * LANE_BITS;
        uint256 word = _summaries[slaId][group];
        uint256 lane = (word >> shift) & LANE_MASK;
        if (lane & SETTLED_BIT != 0) {
            emit LateReportsIgnored(slaId, periodId, m);
            return;
        }

        (uint64 pStart, uint64 pEnd) = _bounds(slaId, c, periodId);
        if (block.timestamp < pEnd) revert PeriodNotFinished(periodId, pEnd);
        uint64 deadline = pEnd + c.settlementWindow;
        if (block.timestamp > deadline) revert SettlementWindowClosed(periodId, deadline);
        bytes32 policy = _policyOf(params);
        bytes32 domain = _domainSeparator();

        uint256 mask = (lane >> 20) & 0xffff;
        // pending entries exist only if some signer has already reported (mask != 0)
        uint256 pending = mask != 0 ? _pending[slaId][periodId] : 0;
        uint256 count = _popcount(mask);
        // entries of this batch: sli 20 | idx 4, in memory
        uint256[] memory entries = new uint256[](m);
        for (uint256 i = 0; i < m; ++i) {
            Report calldata r = reports[i];
            if (r.slaId != slaId || r.periodId != periodId) revert MixedBatch();
            if (r.periodStart != pStart || r.periodEnd != pEnd) revert PeriodMismatch(periodId);
            if (r.policyDigest != policy) revert PolicyMismatch(policy, r.policyDigest);
            if (r.sloPpm != c.objectivePpm) revert ObjectiveMismatch(c.objectivePpm, r.sloPpm);
            if (
                r.sliPpm > PPM || r.good > r.valid || r.breached != (r.sliPpm < c.objectivePpm)
                    || r.issuedAt < pEnd
            ) revert InconsistentReport();
            if (r.valid < c.minSamples) revert TooFewSamples(r.valid, c.minSamples);

            address signer = _recover(domain, r, signatures[i]);
            uint256 slot = _signerSlotOf(params, c.signerCount, signer);
            if (slot == 0) revert NotSigner(signer);
            uint256 idx = slot - 1;
            uint256 bit = 1 << idx;
            if (mask & bit != 0) {
                // counted earlier in this call, or in an earlier call
                if (_inBatch(entries, i, idx)) revert DuplicateSigner(signer);
                revert AlreadyReported(signer);
            }
            mask |= bit;
            entries[i] = (uint256(r.sliPpm) << 4) | idx;
            emit ReportAccepted(slaId, periodId, signer, r.sliPpm);
        }
        count += m;

        if (count < c.quorum) {
            // accumulate: store roots and slis of this batch, update the mask
            uint256 n0 = count - m; // entries already pending
            for (uint256 i = 0; i < m; ++i) {
                pending |= entries[i] << ((n0 + i) * 24);
                _roots[slaId][periodId][entries[i] & 0xf] = reports[i].evidenceRoot;
            }
            _pending[slaId][periodId] = pending;
            lane = (lane & ~(uint256(0xffff) << 20)) | (mask << 20);
            _summaries[slaId][group] = (word & ~(LANE_MASK << shift)) | (lane << shift);
            return;
        }

        // quorum reached: median over pending entries + this batch
        uint256 nPend = count - m;
        uint256[] memory all = new uint256[](count);
        for (uint256 i = 0; i < nPend; ++i) {
            all[i] = (pending >> (i * 24)) & 0xffffff;
        }
        for (uint256 i = 0; i < m; ++i) {
            all[nPend + i] = entries[i];
        }
        _sort(all);
        uint256 med = all[(count - 1) / 2];
        uint32 sli = uint32(med >> 4);
        uint256 medIdx = med & 0xf;
        bytes32 root;
        {
            bool fromBatch = false;
            for (uint256 i = 0; i < m; ++i) {
                if (entries[i] == med) {
                    root = reports[i].evidenceRoot;
                    fromBatch = true;
                    break;
                }
            }
            if (fromBatch) {
                _roots[slaId][periodId][medIdx] = root;
            } else {
                root = _roots[slaId][periodId][medIdx];
            }
        }
        if (nPend != 0) delete _pending[slaId][periodId];

        bool breached = sli < c.objectivePpm;
        // effects: mark settled first
        lane = uint256(sli) | (mask << 20) | (medIdx << 36) | SETTLED_BIT | (breached ? BREACHED_BIT : 0);
        _summaries[slaId][group] = (word & ~(LANE_MASK << shift)) | (lane << shift);

        uint256 compensation;
        if (breached) {
            compensation = _creditBreach(slaId, c, params, sli);
        } else {
            uint256 reward = _metRewardOf(params);
            if (reward != 0) {
                Ledger storage l = _ledger[slaId];
                uint256 pool = l.pool;
                if (reward > pool) reward = pool;
                if (reward != 0) {
                    l.pool = uint96(pool - reward);
                    _teamOwed[slaId] += reward;
                    emit TeamRewarded(slaId, periodId, reward);
                }
            }
        }
        emit PeriodSettled(slaId, periodId, sli, breached, compensation, root);
    }

    /// @dev Compute the compensation of a breached period, take it from the pool and add it to the
    ///      per-weight accumulator. No funds move here.
    function _creditBreach(bytes32 slaId, Core memory c, uint256 params, uint32 sli)
        private
        returns (uint256 comp)
    {
        Payout memory po = _payoutOf(params);
        if (c.tierCount == 0) {
            comp = uint256(c.objectivePpm - sli) * po.ratePerPpm;
        } else {
            for (uint256 i = 0; i < c.tierCount; ++i) {
                Tier memory t = _tierOf(params, c.signerCount, i);
                if (sli < t.sliBelowPpm) comp = t.amount;
                else break;
            }
        }
        if (comp > po.maxPayoutPerPeriod) comp = po.maxPayoutPerPeriod;
        Ledger memory l = _ledger[slaId];
        if (comp > l.pool) comp = l.pool;
        if (comp != 0) {
            _ledger[slaId] = Ledger({
                pool: uint96(l.pool - comp),
                accPerWeight: uint160(l.accPerWeight + (comp * ACC_SCALE) / po.totalWeight)
            });
        }
    }

    // ------------------------------------------------------------------------------------------
    // Claims
    // ------------------------------------------------------------------------------------------

    /// @notice Pay the caller everything it is owed as a beneficiary of `slaId`.
    function claim(bytes32 slaId) external nonReentrant returns (uint256 amount) {
        Beneficiary storage b = _beneficiaries[slaId][msg.sender];
        amount = _claimable(slaId, b);
        if (amount == 0) revert NothingToClaim();
        b.claimed += uint192(amount);
        emit Claimed(slaId, msg.sender, amount);
        _pay(_meta[slaId].asset, msg.sender, amount);
    }

    /// @notice Pay the team address its met-period rewards (callable by the team).
    function claimTeam(bytes32 slaId) external nonReentrant returns (uint256 amount) {
        Meta storage meta = _meta[slaId];
        if (msg.sender != meta.team) revert NotTeam();
        amount = _teamOwed[slaId];
        if (amount == 0) revert NothingToClaim();
        _teamOwed[slaId] = 0;
        emit TeamClaimed(slaId, msg.sender, amount);
        _pay(meta.asset, msg.sender, amount);
    }

    // ------------------------------------------------------------------------------------------
    // Views
    // ------------------------------------------------------------------------------------------

    /// @notice Whether `signer`'s report for the period has been accepted.
    function hasReported(bytes32 slaId, uint64 periodId, address signer) public view returns (bool) {
        uint256 params = _params(slaId);
        uint256 slot = _signerSlotOf(params, _coreOf(params).signerCount, signer);
        if (slot == 0) return false;
        return (_lane(slaId, periodId) >> 20) & (1 << (slot - 1)) != 0;
    }

    /// @notice Whether sending `signer`'s report now would be useful: the period is finished,
    ///         in its settlement window, not settled, and the signer has not reported yet.
    function needsReport(bytes32 slaId, uint64 periodId, address signer) external view returns (bool) {
        uint256 params = _params(slaId);
        Core memory c = _coreOf(params);
        if (!c.exists || _signerSlotOf(params, c.signerCount, signer) == 0 || periodId >= c.periodCount) {
            return false;
        }
        uint256 lane = _lane(slaId, periodId);
        if (lane & SETTLED_BIT != 0) return false;
        if (hasReported(slaId, periodId, signer)) return false;
        (, uint64 end) = _bounds(slaId, c, periodId);
        return block.timestamp >= end && block.timestamp <= uint256(end) + c.settlementWindow;
    }

    /// @notice State of one period.
    function getPeriod(bytes32 slaId, uint64 periodId) external view returns (PeriodView memory v) {
        Core memory c = _coreOf(_params(slaId));
        if (!c.exists) revert UnknownSLA(slaId);
        (v.start, v.end) = _bounds(slaId, c, periodId);
        v.deadline = v.end + c.settlementWindow;
        uint256 lane = _lane(slaId, periodId);
        v.settled = lane & SETTLED_BIT != 0;
        v.breached = lane & BREACHED_BIT != 0;
        v.reportedMask = uint16(lane >> 20);
        v.reportCount = uint8(_popcount(v.reportedMask));
        if (v.settled) {
            v.sliPpm = uint32(lane & 0xfffff);
            v.evidenceRoot = _roots[slaId][periodId][(lane >> 36) & 0xf];
        }
    }

    /// @notice Parameters and balances of an SLA.
    function getSLA(bytes32 slaId) external view returns (SLAView memory v) {
        uint256 params = _params(slaId);
        Core memory c = _coreOf(params);
        if (!c.exists) revert UnknownSLA(slaId);
        Meta memory meta = _meta[slaId];
        Payout memory po = _payoutOf(params);
        v.provider = meta.provider;
        v.team = meta.team;
        v.asset = meta.asset;
        v.objectivePpm = c.objectivePpm;
        v.scheduleStart = c.scheduleStart;
        v.periodLength = c.periodLength;
        v.periodCount = c.periodCount;
        v.settlementWindow = c.settlementWindow;
        v.quorum = c.quorum;
        v.signers = new address[](c.signerCount);
        for (uint256 i = 0; i < c.signerCount; ++i) {
            v.signers[i] = _signerAt(params, i);
        }
        v.minSamples = c.minSamples;
        v.policyDigest = _policyOf(params);
        v.ratePerPpm = po.ratePerPpm;
        v.tiers = new Tier[](c.tierCount);
        for (uint256 i = 0; i < c.tierCount; ++i) {
            v.tiers[i] = _tierOf(params, c.signerCount, i);
        }
        v.maxPayoutPerPeriod = po.maxPayoutPerPeriod;
        v.metReward = meta.metReward;
        v.totalWeight = po.totalWeight;
        v.pool = _ledger[slaId].pool;
        v.teamOwed = _teamOwed[slaId];
    }

    /// @notice Start and end (exclusive) of a period, as the reports must carry them.
    function periodBounds(bytes32 slaId, uint64 periodId) external view returns (uint64 start, uint64 end) {
        Core memory c = _coreOf(_params(slaId));
        if (!c.exists) revert UnknownSLA(slaId);
        return _bounds(slaId, c, periodId);
    }

    /// @notice The evidence root stored for `signer`'s report (the median signer's root is the
    ///         settled root); zero if that report's root was not stored.
    function reportRoot(bytes32 slaId, uint64 periodId, address signer) external view returns (bytes32) {
        uint256 params = _params(slaId);
        uint256 slot = _signerSlotOf(params, _coreOf(params).signerCount, signer);
        if (slot == 0) return bytes32(0);
        return _roots[slaId][periodId][slot - 1];
    }

    /// @notice What `account` can claim now as a beneficiary.
    function claimable(bytes32 slaId, address account) external view returns (uint256) {
        return _claimable(slaId, _beneficiaries[slaId][account]);
    }

    /// @notice Weight of a beneficiary (0 if not one) and what it was paid so far.
    function beneficiary(bytes32 slaId, address account) external view returns (uint64 weight, uint256 claimed) {
        Beneficiary memory b = _beneficiaries[slaId][account];
        return (b.weight, b.claimed);
    }

    /// @notice What the provider could withdraw now (see `withdraw` for the rule).
    function withdrawable(bytes32 slaId) public view returns (uint256) {
        Core memory c = _coreOf(_params(slaId));
        if (!c.exists) revert UnknownSLA(slaId);
        uint256 pool = _ledger[slaId].pool;
        uint256 nowTs = block.timestamp;
        // number of finished periods
        uint256 finished;
        if (nowTs >= c.scheduleStart) {
            if (c.periodLength != 0) {
                finished = (nowTs - c.scheduleStart) / c.periodLength;
                if (finished > c.periodCount) finished = c.periodCount;
            } else {
                finished = _countBoundariesAtOrBefore(_boundaries[slaId], nowTs) - 1;
            }
        }
        if (finished > 0) {
            uint64 last = uint64(finished - 1);
            (, uint64 end) = _bounds(slaId, c, last);
            // settlementWindow <= every period length: only the last finished period can be open
            if (_lane(slaId, last) & SETTLED_BIT == 0 && nowTs <= uint256(end) + c.settlementWindow) {
                revert SettlementPending(last);
            }
        }
        if (finished < c.periodCount) {
            uint256 reserve = _payoutOf(_params(slaId)).maxPayoutPerPeriod;
            uint256 reward = _meta[slaId].metReward;
            if (reward > reserve) reserve = reward;
            return pool > reserve ? pool - reserve : 0;
        }
        return pool;
    }

    /// @notice Check an evidence leaf against the settled period's evidence root (OpenZeppelin
    ///         MerkleProof semantics: sorted-pair keccak256). `leaf` is the double-hashed leaf.
    function verifyEvidence(bytes32 slaId, uint64 periodId, bytes32 leaf, bytes32[] calldata proof)
        public
        view
        returns (bool)
    {
        uint256 lane = _lane(slaId, periodId);
        if (lane & SETTLED_BIT == 0) return false;
        bytes32 root = _roots[slaId][periodId][(lane >> 36) & 0xf];
        bytes32 h = leaf;
        for (uint256 i = 0; i < proof.length; ++i) {
            bytes32 p = proof[i];
            h = h < p ? keccak256(abi.encode(h, p)) : keccak256(abi.encode(p, h));
        }
        return h == root;
    }

    /// @notice The StandardMerkleTree leaf hash of one evidence bucket.
    function evidenceLeaf(bytes32 targetId, uint64 bucketStart, uint32 good, uint32 valid, uint32 noData)
        public
        pure
        returns (bytes32)
    {
        return keccak256(bytes.concat(keccak256(abi.encode(targetId, bucketStart, good, valid, noData))));
    }

    /// @notice EIP-712 digest of a report under this contract's domain.
    function reportDigest(Report calldata r) external view returns (bytes32) {
        return _digest(_domainSeparator(), r);
    }

    /// @notice The EIP-712 domain separator (recomputed if the chain id changed, e.g. a fork).
    function domainSeparator() external view returns (bytes32) {
        return _domainSeparator();
    }

    /// @notice EIP-5267 domain description.
    function eip712Domain()
        external
        view
        returns (
            bytes1 fields,
            string memory name,
            string memory version,
            uint256 chainId,
            address verifyingContract,
            bytes32 salt,
            uint256[] memory extensions
        )
    {
        return (hex"0f", "slamon", "1", block.chainid, address(this), bytes32(0), new uint256[](0));
    }

    // ------------------------------------------------------------------------------------------
    // Internals
    // ------------------------------------------------------------------------------------------

    /// @dev Create the SLA's parameter data contract (see "Immutable SLA parameters").
    function _deployParams(bytes32 slaId, bytes memory blob) private {
        bytes memory proxyCode = PROXY_INITCODE;
        address proxy;
        assembly ("memory-safe") {
            proxy := create2(0, add(proxyCode, 32), mload(proxyCode), slaId)
        }
        if (proxy == address(0)) revert InvalidParams("params");
        // init code: PUSH2 len, DUP1, PUSH1 0x0a, RETURNDATASIZE, CODECOPY, RETURNDATASIZE, RETURN;
        // the runtime code is 0x00 (STOP) ++ blob
        bytes memory initCode =
            abi.encodePacked(hex"61", uint16(blob.length + 1), hex"80600a3d393df300", blob);
        (bool ok,) = proxy.call(initCode);
        if (!ok || _paramsAddress(slaId).code.length != blob.length + 1) revert InvalidParams("params");
    }

    /// @dev Address of the SLA's parameter data contract (CREATE3: proxy by CREATE2, nonce 1).
    function _paramsAddress(bytes32 slaId) private view returns (address a) {
        bytes32 proxyHash = PROXY_INITCODE_HASH;
        assembly ("memory-safe") {
            let m := mload(0x40)
            mstore(0x00, address())
            mstore8(0x0b, 0xff)
            mstore(0x20, slaId)
            mstore(0x40, proxyHash)
            mstore(0x14, keccak256(0x0b, 0x55)) // proxy address at [0x20, 0x34)
            mstore(0x40, m)
            mstore(0x00, 0xd694) // RLP list prefix, address prefix
            mstore8(0x34, 0x01) // proxy nonce 1
            a := and(keccak256(0x1e, 0x17), 0xffffffffffffffffffffffffffffffffffffffff)
        }
    }

    /// @dev Copy the SLA's parameter blob to fresh memory (zeros if not registered); returns its
    ///      memory address.
    function _params(bytes32 slaId) private view returns (uint256 ptr) {
        address a = _paramsAddress(slaId);
        assembly ("memory-safe") {
            ptr := mload(0x40)
            mstore(0x40, add(ptr, BLOB_COPY))
            extcodecopy(a, ptr, 1, BLOB_COPY)
        }
    }

    function _word(uint256 ptr, uint256 offset) private pure returns (uint256 w) {
        assembly ("memory-safe") {
            w := mload(add(ptr, offset))
        }
    }

    function _coreOf(uint256 params) private pure returns (Core memory c) {
        uint256 w = _word(params, 0);
        c.scheduleStart = uint64(w);
        c.periodLength = uint32(w >> 64);
        c.periodCount = uint32(w >> 96);
        c.settlementWindow = uint32(w >> 128);
        c.objectivePpm = uint32(w >> 160);
        c.minSamples = uint32(w >> 192);
        c.quorum = uint8(w >> 224);
        c.signerCount = uint8(w >> 232);
        c.tierCount = uint8(w >> 240);
        c.exists = uint8(w >> 248) != 0;
    }

    function _policyOf(uint256 params) private pure returns (bytes32) {
        return bytes32(_word(params, 32));
    }

    function _payoutOf(uint256 params) private pure returns (Payout memory po) {
        uint256 w = _word(params, 64);
        po.ratePerPpm = uint96(w);
        po.maxPayoutPerPeriod = uint96(w >> 96);
        po.totalWeight = uint64(w >> 192);
    }

    function _metRewardOf(uint256 params) private pure returns (uint256) {
        return uint96(_word(params, 96));
    }

    function _signerAt(uint256 params, uint256 i) private pure returns (address) {
        return address(uint160(_word(params, BLOB_HEADER + 20 * i) >> 96));
    }

    /// @dev Index + 1 of `signer` in the signer list (0 = not a signer).
    function _signerSlotOf(uint256 params, uint256 n, address signer) private pure returns (uint256) {
        for (uint256 i = 0; i < n; ++i) {
            if (_signerAt(params, i) == signer) return i + 1;
        }
        return 0;
    }

    function _tierOf(uint256 params, uint256 signerCount, uint256 i) private pure returns (Tier memory) {
        uint256 w = _word(params, BLOB_HEADER + 20 * signerCount + 16 * i);
        return Tier({sliBelowPpm: uint32(w >> 224), amount: uint96(w >> 128)});
    }

    function _lane(bytes32 slaId, uint64 periodId) private view returns (uint256) {
        return (_summaries[slaId][periodId / LANES] >> ((periodId % LANES) * LANE_BITS)) & LANE_MASK;
    }

    function _bounds(bytes32 slaId, Core memory c, uint64 periodId) private view returns (uint64, uint64) {
        if (periodId >= c.periodCount) revert UnknownPeriod(periodId);
        if (c.periodLength != 0) {
            uint64 s = c.scheduleStart + periodId * c.periodLength;
            return (s, s + c.periodLength);
        }
        uint64[] storage b = _boundaries[slaId];
        return (b[periodId], b[periodId + 1]);
    }

    /// @dev Number of boundaries <= t (binary search over a sorted array).
    function _countBoundariesAtOrBefore(uint64[] storage b, uint256 t) private view returns (uint256) {
        uint256 lo = 0;
        uint256 hi = b.length;
        while (lo < hi) {
            uint256 mid = (lo + hi) / 2;
            if (b[mid] <= t) lo = mid + 1;
            else hi = mid;
        }
        return lo;
    }

    function _claimable(bytes32 slaId, Beneficiary storage b) private view returns (uint256) {
        uint256 entitled = (uint256(b.weight) * _ledger[slaId].accPerWeight) / ACC_SCALE;
        return entitled - b.claimed;
    }

    function _domainSeparator() private view returns (bytes32) {
        return block.chainid == _cachedChainId ? _cachedDomainSeparator : _buildDomainSeparator();
    }

    function _buildDomainSeparator() private view returns (bytes32) {
        return keccak256(abi.encode(DOMAIN_TYPEHASH, NAME_HASH, VERSION_HASH, block.chainid, address(this)));
    }

    /// @dev hashStruct(Report) = keccak256(typeHash || the 13 static fields as 32-byte words).
    ///      The calldata struct is 13 contiguous words: it is hashed as it is. A non-canonical
    ///      encoding (dirty high bits) cannot match a signature over the canonical EIP-712 encoding,
    ///      and reading its fields reverts anyway.
    function _digest(bytes32 domain, Report calldata r) private pure returns (bytes32 digest) {
        bytes32 typeHash = REPORT_TYPEHASH;
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            mstore(ptr, typeHash)
            calldatacopy(add(ptr, 0x20), r, 0x1a0)
            let structHash := keccak256(ptr, 0x1c0)
            mstore(ptr, 0x1901000000000000000000000000000000000000000000000000000000000000)
            mstore(add(ptr, 0x02), domain)
            mstore(add(ptr, 0x22), structHash)
            digest := keccak256(ptr, 0x42)
        }
    }

    /// @dev Recover the signer of a report; rejects malformed, high-s and zero-address signatures.
    function _recover(bytes32 domain, Report calldata r, bytes calldata sig) private pure returns (address) {
        if (sig.length != 65) revert BadSignature();
        bytes32 rr;
        bytes32 ss;
        uint8 v;
        assembly ("memory-safe") {
            rr := calldataload(sig.offset)
            ss := calldataload(add(sig.offset, 32))
            v := byte(0, calldataload(add(sig.offset, 64)))
        }
        if (uint256(ss) > HALF_N) revert HighS();
        if (v != 27 && v != 28) revert BadSignature();
        address signer = ecrecover(_digest(domain, r), v, rr, ss);
        if (signer == address(0)) revert BadSignature();
        return signer;
    }

    function _inBatch(uint256[] memory entries, uint256 upto, uint256 idx) private pure returns (bool) {
        for (uint256 j = 0; j < upto; ++j) {
            if (entries[j] & 0xf == idx) return true;
        }
        return false;
    }

    /// @dev Insertion sort (at most 16 elements).
    function _sort(uint256[] memory a) private pure {
        for (uint256 i = 1; i < a.length; ++i) {
            uint256 x = a[i];
            uint256 j = i;
            while (j > 0 && a[j - 1] > x) {
                a[j] = a[j - 1];
                --j;
            }
            a[j] = x;
        }
    }

    function _popcount(uint256 x) private pure returns (uint256 n) {
        while (x != 0) {
            x &= x - 1;
            ++n;
        }
    }

    function _pay(address asset, address to, uint256 amount) private {
        if (asset == address(0)) {
            (bool ok,) = to.call{value: amount}("");
            if (!ok) revert TransferFailed();
        } else {
            _callToken(asset, abi.encodeWithSelector(0xa9059cbb, to, amount)); // transfer
        }
    }

    function _safeTransferFrom(address token, address from, uint256 amount) private {
        _callToken(token, abi.encodeWithSelector(0x23b872dd, from, address(this), amount));
    }

    /// @dev Call a token; accept no return data (non-standard tokens) or `true`.
    function _callToken(address token, bytes memory data) private {
        if (token.code.length == 0) revert TransferFailed();
        (bool ok, bytes memory ret) = token.call(data);
        if (!ok || (ret.length != 0 && (ret.length < 32 || abi.decode(ret, (uint256)) != 1))) {
            revert TransferFailed();
        }
    }

    function _balanceOf(address token) private view returns (uint256) {
        (bool ok, bytes memory ret) = token.staticcall(abi.encodeWithSelector(0x70a08231, address(this)));
        if (!ok || ret.length < 32) revert TransferFailed();
        return abi.decode(ret, (uint256));
    }
}
