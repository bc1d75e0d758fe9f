// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";

/// @title SLACompensation
/// @author slamon
/// @notice Two-sided SLA compensation pool settled by EIP-712 signed SLI reports of n oracles,
///         tolerating f Byzantine ones (n >= 3f + 1, quorum 2f + 1).
/// @dev A provider registers an SLA (objective, period schedule, signer set and quorum, payout
///      rule, beneficiaries, asset) under id keccak256(abi.encode(provider, name)) and funds a
///      pool. Authorised signers (slamon daemons) sign one `Report` per closed period. Every
///      report is stored as it arrives (one per signer), whoever relays it and in whatever
///      batches. A period settles over ALL the reports it received: at once when all n signers
///      have reported, otherwise by `settle` once its report deadline has passed (reports are
///      accepted while block.timestamp < deadline) if at least `quorum` arrived. The settled SLI
///      is the lower median of all received values: with at most f liars among >= 2f + 1
///      values, it lies between the lowest and the highest honest value, and no relayer can
///      choose a subset. A period without a quorum by its deadline is stalled, never dropped:
///      it keeps its worst payout reserved and the next report opens a late window. A quorum
///      of the current signers can rotate the signer set (versioned; the old set's unsettled
///      reports become void). Payouts are credited in whole units per weight (the remainder
///      stays in the pool), so every wei is accounted for. Beneficiaries and the provider's
///      team pull their funds with `claim` / `claimTeam`.
///
///      Storage layout is designed for gas: one fresh slot per settled period (the evidence root),
///      period summaries packed 6 per slot, pool and accumulator packed in one slot, immutable SLA
///      parameters (core, policy, payout rule, met reward, signers, tiers) stored as the code of a
///      per-SLA, per-signer-set data contract and read with one EXTCODECOPY.
contract SLACompensation is ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

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
    /// @param name Name chosen by the provider; the SLA id is keccak256(abi.encode(provider, name)),
    ///        so nobody else can take a provider's id.
    /// @param objectivePpm Service level objective in parts per million (breach iff SLI < objective).
    /// @param scheduleStart Start of period 0 (unix seconds); ignored when `boundaries` is non-empty.
    /// @param periodLength Length of every period in seconds; ignored when `boundaries` is non-empty.
    /// @param periodCount Number of periods of the fixed schedule (> 0); ignored with `boundaries`.
    /// @param boundaries Explicit strictly increasing period boundaries (calendar months...):
    ///        period i is [boundaries[i], boundaries[i+1]). Empty for a fixed-length schedule.
    /// @param settlementWindow Seconds after a period ends during which reports are accepted
    ///        (deadline exclusive); must be > 0 and < the shortest period, so report windows of
    ///        two periods never overlap.
    /// @param signers Authorised report signers (1..10, distinct, non-zero).
    /// @param quorum 2f + 1, the minimum number of reports a period needs to settle, where f is
    ///        the number of lying signers tolerated; n >= 3f + 1 and f >= 1 (f = 0 only on the
    ///        dev chain 31337 or with `singleOracle`).
    /// @param singleOracle Explicit single-oracle SLA: one signer, quorum 1, no fault tolerance
    ///        (shown in `SLARegistered` and `getSLA`).
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
    /// @param firstPeriodId Id of the first period: periods are numbered firstPeriodId ..
    ///        firstPeriodId + count - 1, so that a daemon, its API and status page, its reports
    ///        and this contract's events all name a period by the same id (slamon's).
    struct SLAParams {
        bytes32 name;
        uint32 objectivePpm;
        uint64 scheduleStart;
        uint32 periodLength;
        uint32 periodCount;
        uint64[] boundaries;
        uint32 settlementWindow;
        address[] signers;
        uint8 quorum;
        bool singleOracle;
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
        uint64 firstPeriodId;
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
        bool singleOracle;
        uint64 firstPeriodId; // word 4 of the blob
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

    /// @dev Pool (unreserved funds) and cumulative payout per weight unit, in whole wei: a
    ///      beneficiary is owed weight * accPerWeight exactly (no rounding anywhere).
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
        bool singleOracle;
        uint16 signerSetVersion;
        uint64 firstPeriodId;
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
        bool stalled;
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
    /// @notice EIP-712 type hash of a signer-set rotation approved by the current signers.
    bytes32 public constant ROTATION_TYPEHASH =
        keccak256("Rotation(bytes32 slaId,uint16 version,address[] signers,uint8 quorum)");
    bytes32 private constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 private constant NAME_HASH = keccak256("slamon");
    bytes32 private constant VERSION_HASH = keccak256("1");
    /// @dev secp256k1n / 2: signatures with a larger s are malleable twins and rejected.
    uint256 private constant HALF_N = 0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0;

    /// @notice Parts per million of a perfect SLI.
    uint32 public constant PPM = 1_000_000;
    /// @notice Maximum number of signers of an SLA: all received reports are kept until
    ///         settlement, packed 10 per slot (f <= 3).
    uint256 public constant MAX_SIGNERS = 10;
    /// @notice The local development chain (anvil, py-evm tests), where f = 0 is allowed.
    uint256 public constant DEV_CHAIN_ID = 31337;
    uint256 public constant MAX_TIERS = 4;
    uint256 public constant MAX_BENEFICIARIES = 64;

    // Period summary lane (42 bits, 6 per slot): sli 20 | mask 16 | medianIdx 4 | settled | breached.
    // The mask (signers counted) is written at settlement; before it, bit 35 (beyond the 10
    // signers) marks a record kept in an overflow slot.
    uint256 private constant LANE_BITS = 42;
    uint256 private constant LANES = 6;
    uint256 private constant LANE_MASK = (1 << 42) - 1;
    uint256 private constant LANE_OVERFLOW = 1 << 35;
    uint256 private constant SETTLED_BIT = 1 << 40;
    uint256 private constant BREACHED_BIT = 1 << 41;

    // Record of an unsettled period (see `_records`)
    uint256 private constant REC_ENTRIES = (1 << 200) - 1;
    uint256 private constant REC_VERSION_SHIFT = 200;
    uint256 private constant REC_SETTLED = 1 << 216;
    uint256 private constant REC_TAG_SHIFT = 217;

    // ------------------------------------------------------------------------------------------
    // Immutable SLA parameters (the parameter blob)
    // ------------------------------------------------------------------------------------------
    // The immutable parameters read at settlement (core, policy digest, payout rule, met reward,
    // signers, tiers) are stored as the runtime code of a data contract created at registration,
    // and read with ONE EXTCODECOPY (one cold account access, 2 600 gas) instead of one cold
    // SLOAD (2 100 gas) each. The data contract's address is derived from the SLA id and the
    // signer-set version alone (CREATE3 pattern): this contract CREATE2s a fixed 16-byte proxy
    // with salt = slaId (version 0) or keccak256(slaId, version), and the proxy CREATEs the data
    // contract (its first and only creation, nonce 1). Nobody else can create code at that
    // address, and the code has no way to change: it starts with STOP, has no SELFDESTRUCT and
    // is never called. A rotation creates the next version's blob (same fields, new signers and
    // quorum). An unregistered id reads as all zeros (exists = false).
    //
    // Blob layout (the data contract's code is 0x00 ++ blob):
    //   [0, 32)    Core, packed like the struct (low bits first)
    //   [32, 64)   policy digest
    //   [64, 96)   Payout: ratePerPpm 96 | maxPayoutPerPeriod 96 | totalWeight 64 (low bits first)
    //   [96, 128)  metReward (uint96, right-aligned)
    //   [128, 160) firstPeriodId (uint64, right-aligned)
    //   then signerCount addresses of 20 bytes, then tierCount tiers of 16 bytes
    //   (sliBelowPpm uint32 | amount uint96, big-endian).

    /// @dev Solady's CREATE3 proxy: CREATEs its calldata as init code.
    bytes private constant PROXY_INITCODE = hex"67363d3d37363d34f03d5260086018f3";
    bytes32 private constant PROXY_INITCODE_HASH = keccak256(PROXY_INITCODE);
    uint256 private constant BLOB_HEADER = 160;
    /// @dev Bytes copied to memory: header + 10 signers + 4 tiers, rounded up to whole words.
    uint256 private constant BLOB_COPY = 448;

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
    /// @dev Reports received for a period not settled yet (its "record"), kept in one of two
    ///      per-SLA ring slots (loc = periodId & 1) that are reused period after period, so a
    ///      report rewrites a warm-able slot instead of filling a fresh one. When that ring slot
    ///      is held by another unsettled period (a stalled one), the record goes to an overflow
    ///      slot (loc = 2 + periodId), marked in the period's lane (LANE_OVERFLOW).
    ///      Layout: for signer index i, bits [20i, 20i + 20) hold sliPpm + 1 (0 = no report);
    ///      bits 200..215 the signer-set version the reports were checked against (entries of an
    ///      earlier version are void: their signers were rotated out); bit 216 set once the
    ///      period settled (the ring slot is then free); bits 217.. the tag (periodId >> 1,
    ///      39 bits: exact for every period of a schedule, which has fewer than 2^32).
    mapping(bytes32 slaId => mapping(uint256 loc => uint256)) private _records;
    /// @dev Evidence roots of the reports in the record at `loc`, by signer index (overwritten
    ///      when the ring slot is reused; every report's root is also in `ReportAccepted`).
    mapping(bytes32 slaId => mapping(uint256 loc => mapping(uint256 signerIdx => bytes32))) private _roots;
    /// @dev Evidence root of a settled period: its median signer's.
    mapping(bytes32 slaId => mapping(uint64 periodId => bytes32)) private _settledRoots;
    /// @dev Per SLA: signer-set version (bits 0..15) | number of settled periods (bits 32..95) |
    ///      bit 255 set at registration.
    ///      The settled count prices the withdrawal reserve: every finished period not settled
    ///      yet keeps its worst payout in the pool.
    mapping(bytes32 slaId => uint256) private _state;
    /// @dev Report deadline of a stalled period (no quorum by its regular deadline): its late
    ///      window, opened by the first report after the regular deadline; 0 while none is open.
    mapping(bytes32 slaId => mapping(uint64 periodId => uint64)) private _late;

    // ------------------------------------------------------------------------------------------
    // Events
    // ------------------------------------------------------------------------------------------

    /// @notice An SLA was registered.
    event SLARegistered(
        bytes32 indexed slaId,
        address indexed provider,
        bytes32 name,
        address asset,
        uint32 objectivePpm,
        uint8 quorum,
        bool singleOracle,
        address[] signers,
        bytes32 policyDigest
    );
    /// @notice A beneficiary was added with `weight` at registration (weights are divided by
    ///         their greatest common divisor: only the ratios matter).
    event BeneficiaryAdded(bytes32 indexed slaId, address indexed account, uint64 weight);
    /// @notice The pool received `amount` from `from`.
    event PoolFunded(bytes32 indexed slaId, address indexed from, uint256 amount);
    /// @notice The provider withdrew `amount` to `to`.
    event PoolWithdrawn(bytes32 indexed slaId, address indexed to, uint256 amount);
    /// @notice A signer's report was accepted (it counts in the settlement). Only the settled
    ///         (median) evidence root stays in storage; every report's root is here.
    event ReportAccepted(
        bytes32 indexed slaId, uint64 indexed periodId, address indexed signer, uint32 sliPpm, bytes32 evidenceRoot
    );
    /// @notice Reports arrived for an already settled period and were ignored (no state change).
    event LateReportsIgnored(bytes32 indexed slaId, uint64 indexed periodId, uint256 count);

    /// @notice A period without a quorum by its deadline received a report: reports are taken
    ///         until `deadline` (exclusive), then it settles over all of them like any period.
    event LateWindowOpened(bytes32 indexed slaId, uint64 indexed periodId, uint64 deadline);

    /// @notice A quorum of the previous signer set installed signer set `version`; reports not
    ///         settled yet that were signed by the previous set are void.
    event SignersRotated(bytes32 indexed slaId, uint16 version, address[] signers, uint8 quorum);
    /// @notice A period was settled over `reportCount` reports. `compensation` is exactly what
    ///         the beneficiaries are credited (0 when met).
    event PeriodSettled(
        bytes32 indexed slaId,
        uint64 indexed periodId,
        uint32 sliPpm,
        bool breached,
        uint256 compensation,
        bytes32 evidenceRoot,
        uint256 reportCount
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
    error NoRotationQuorum(uint256 approvals, uint256 quorum);
    error DuplicateSigner(address signer);
    error AlreadyReported(address signer);
    error ReportWindowOpen(uint64 periodId, uint64 deadline);
    error NoQuorum(uint64 periodId, uint256 reports, uint256 quorum);
    error AlreadySettled(uint64 periodId);
    error InsufficientWithdrawable(uint256 requested, uint256 available);
    error BadValue();
    error NothingToClaim();
    error TransferFailed();

    // ------------------------------------------------------------------------------------------
    // Construction, modifiers
    // ------------------------------------------------------------------------------------------

    constructor() {
        _cachedChainId = block.chainid;
        _cachedDomainSeparator = _buildDomainSeparator();
    }

    // ------------------------------------------------------------------------------------------
    // Registration and pool
    // ------------------------------------------------------------------------------------------

    /// @notice The id of the SLA `provider` registers (or registered) as `name`.
    function slaIdOf(address provider, bytes32 name) public pure returns (bytes32) {
        return keccak256(abi.encode(provider, name));
    }

    /// @notice Register an SLA; the caller becomes its provider. Parameters are immutable.
    /// @param p The registration parameters (see `SLAParams`).
    /// @return id keccak256(abi.encode(msg.sender, p.name)).
    function registerSLA(SLAParams calldata p) external returns (bytes32 id) {
        id = slaIdOf(msg.sender, p.name);
        if (_meta[id].provider != address(0)) revert SLAExists(id);
        if (p.objectivePpm == 0 || p.objectivePpm > PPM) revert InvalidParams("objective");
        uint256 n = p.signers.length;
        _checkSigners(p.signers, p.quorum, p.singleOracle);
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
            if (p.settlementWindow >= p.periodLength) revert InvalidParams("settlementWindow");
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
                if (cur <= prev || cur - prev <= p.settlementWindow) revert InvalidParams("boundaries");
                b.push(cur);
            }
            start = p.boundaries[0];
            count = uint32(nb - 1);
        }
        if (uint256(p.firstPeriodId) + count > type(uint64).max) revert InvalidParams("firstPeriodId");

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

        _writeSigners(blob, p.signers);

        uint256 nben = p.beneficiaries.length;
        if (nben == 0 || nben > MAX_BENEFICIARIES || nben != p.weights.length) {
            revert InvalidParams("beneficiaries");
        }
        // only the ratios matter: dividing by the gcd keeps the unit of payout (total weight)
        // small, so less of a compensation is rounded down to a whole number of units
        uint256 g;
        for (uint256 i = 0; i < nben; ++i) {
            g = _gcd(g, p.weights[i]);
        }
        if (g == 0) revert InvalidParams("beneficiary");
        uint256 total;
        for (uint256 i = 0; i < nben; ++i) {
            address a = p.beneficiaries[i];
            uint64 w = uint64(p.weights[i] / g);
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
            | (uint256(p.singleOracle ? 3 : 1) << 248);
        uint256 payout =
            uint256(p.ratePerPpm) | (uint256(p.maxPayoutPerPeriod) << 96) | (total << 192);
        bytes32 policy = p.policyDigest;
        uint256 metReward = p.metReward;
        uint256 firstId = p.firstPeriodId;
        assembly ("memory-safe") {
            mstore(add(blob, 32), core)
            mstore(add(blob, 64), policy)
            mstore(add(blob, 96), payout)
            mstore(add(blob, 128), metReward)
            mstore(add(blob, 160), firstId)
        }
        _deployParams(id, blob);
        // non-zero from the start, so that counting the first settled period rewrites the slot
        // (2 900 gas) instead of filling a fresh one (20 000)
        _state[id] = 1 << 255;
        _meta[id] = Meta({provider: msg.sender, metReward: p.metReward, team: p.team, asset: p.asset});
        emit SLARegistered(
            id, msg.sender, p.name, p.asset, p.objectivePpm, p.quorum, p.singleOracle, p.signers, p.policyDigest
        );
    }

    /// @notice Replace the signer set of `slaId` (version + 1), approved by a quorum of the
    ///         current signers; anyone may relay it. The provider cannot swap in its own
    ///         signers, and a set that lost members (keys lost, operators gone) can be renewed by
    ///         its remaining quorum. Reports of the previous set that are not settled yet are
    ///         void: their periods take reports of the new set (stalled ones in a late window).
    /// @param signers The new set (the registration rules apply; a single-oracle SLA stays one).
    /// @param quorum The new quorum, 2f + 1 with n >= 3f + 1.
    /// @param approvals EIP-712 `Rotation(slaId, version, signers, quorum)` signatures of at
    ///        least `quorum` distinct members of the current set, version = current + 1.
    function rotateSigners(
        bytes32 slaId,
        address[] calldata signers,
        uint8 quorum,
        bytes[] calldata approvals
    ) external {
        uint256 st = _state[slaId];
        uint256 version = st & 0xffff;
        uint256 params = _params(slaId, version);
        Core memory c = _coreOf(params);
        if (!c.exists) revert UnknownSLA(slaId);
        if (version == type(uint16).max) revert InvalidParams("version");
        _checkSigners(signers, quorum, c.singleOracle);
        bytes32 digest = keccak256(
            abi.encodePacked(
                hex"1901",
                _domainSeparator(),
                keccak256(
                    abi.encode(
                        ROTATION_TYPEHASH, slaId, version + 1, keccak256(abi.encodePacked(signers)), quorum
                    )
                )
            )
        );
        uint256 seen;
        for (uint256 i = 0; i < approvals.length; ++i) {
            address signer = _recoverDigest(digest, approvals[i]);
            uint256 slot = _signerSlotOf(params, c.signerCount, signer);
            if (slot == 0) revert NotSigner(signer);
            if (seen & (1 << slot) != 0) revert DuplicateSigner(signer);
            seen |= 1 << slot;
        }
        if (approvals.length < c.quorum) revert NoRotationQuorum(approvals.length, c.quorum);

        uint256 n = signers.length;
        bytes memory blob = new bytes(BLOB_HEADER + 20 * n + 16 * c.tierCount);
        uint256 core = (_word(params, 0) & ~(uint256(0xffff) << 224)) | (uint256(quorum) << 224) | (n << 232);
        assembly ("memory-safe") {
            let to := add(blob, 32)
            mstore(to, core)
            mstore(add(to, 32), mload(add(params, 32)))
            mstore(add(to, 64), mload(add(params, 64)))
            mstore(add(to, 96), mload(add(params, 96)))
            mstore(add(to, 128), mload(add(params, 128)))
        }
        _writeSigners(blob, signers);
        for (uint256 i = 0; i < c.tierCount; ++i) {
            uint256 tier = _word(params, BLOB_HEADER + 20 * c.signerCount + 16 * i)
                & ~uint256(0xffffffffffffffffffffffffffffffff);
            uint256 off = BLOB_HEADER + 20 * n + 16 * i;
            assembly ("memory-safe") {
                let ptr := add(add(blob, 32), off)
                mstore(ptr, or(tier, and(mload(ptr), 0xffffffffffffffffffffffffffffffff)))
            }
        }
        _deployParams(_salt(slaId, version + 1), blob);
        _state[slaId] = st + 1;
        emit SignersRotated(slaId, uint16(version + 1), signers, quorum);
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
            uint256 before = IERC20(asset).balanceOf(address(this));
            IERC20(asset).safeTransferFrom(msg.sender, address(this), amount);
            received = IERC20(asset).balanceOf(address(this)) - before;
        }
        Ledger storage l = _ledger[slaId];
        l.pool = SafeCast.toUint96(uint256(l.pool) + received);
        emit PoolFunded(slaId, msg.sender, received);
    }

    /// @notice Withdraw `amount` of unowed funds to `to` (provider only).
    /// @dev Rule: every finished period that is not settled yet (in its report window, waiting
    ///      for `settle`, or stalled without a quorum) and, while the SLA has a period running
    ///      or to come, one more period keep max(maxPayoutPerPeriod, metReward) each in the
    ///      pool; the rest may be withdrawn. Amounts credited to beneficiaries or the team at
    ///      settlement are never part of the pool.
    function withdraw(bytes32 slaId, uint256 amount, address to) external nonReentrant {
        if (_meta[slaId].provider != msg.sender) revert NotProvider();
        if (to == address(0)) revert InvalidParams("to");
        uint256 available = withdrawable(slaId);
        if (amount > available) revert InsufficientWithdrawable(amount, available);
        _ledger[slaId].pool -= SafeCast.toUint96(amount);
        emit PoolWithdrawn(slaId, to, amount);
        _pay(_meta[slaId].asset, to, amount);
    }

    // ------------------------------------------------------------------------------------------
    // Reports and settlement
    // ------------------------------------------------------------------------------------------

    /// @notice Submit signed reports for ONE period of ONE SLA.
    /// @dev Each report is checked (schedule, finished, window, policy, objective, internal
    ///      consistency, sample count), its EIP-712 signature verified (low-s, v in {27,28}, signer
    ///      in the current set, not already stored) and stored. Reports are accepted while
    ///      periodEnd <= block.timestamp < periodEnd + settlementWindow. A period that has no
    ///      quorum by then is stalled: the next report opens a late window of settlementWindow
    ///      seconds (`LateWindowOpened`), again and again until a quorum is reached, so its
    ///      compensation is never silently dropped. When the last of the n signers has reported,
    ///      the period settles in this call; otherwise `settle` settles it after the (late)
    ///      deadline. If the period is already settled, nothing is checked or changed:
    ///      `LateReportsIgnored` is emitted and the call succeeds.
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
        uint256 version = _state[slaId] & 0xffff;
        uint256 params = _params(slaId, version);
        Core memory c = _coreOf(params);
        if (!c.exists) revert UnknownSLA(slaId);

        // The ring slot answers for the period that holds it; the lane (a cold read) is only
        // needed for a period's first report, a settled period's late one, or an overflow.
        uint256 loc = periodId & 1;
        uint256 rec = _records[slaId][loc];
        uint256 tag = _tag(periodId);
        bool overflowNew;
        // whether storage holds this period's record (else nothing needs marking at settlement)
        bool held = rec != 0 && rec >> REC_TAG_SHIFT == tag;
        if (held) {
            if (rec & REC_SETTLED != 0) {
                emit LateReportsIgnored(slaId, periodId, m);
                return;
            }
        } else {
            uint256 lane = _lane(slaId, periodId);
            if (lane & SETTLED_BIT != 0) {
                emit LateReportsIgnored(slaId, periodId, m);
                return;
            }
            if (lane & LANE_OVERFLOW != 0) {
                loc = 2 + periodId;
                rec = _records[slaId][loc];
                held = true;
            } else if (rec == 0 || rec & REC_SETTLED != 0 || (rec >> REC_VERSION_SHIFT) & 0xffff != version) {
                // the ring slot is free (its period settled, or its reports are void): take it
                rec = 0;
            } else {
                // held by another unsettled period (a stalled one)
                loc = 2 + periodId;
                rec = 0;
                overflowNew = true;
            }
        }
        if ((rec >> REC_VERSION_SHIFT) & 0xffff != version) {
            // signed by a rotated-out set: void
            rec = 0;
        }

        (uint64 pStart, uint64 pEnd) = _bounds(slaId, c, periodId);
        if (block.timestamp < pEnd) revert PeriodNotFinished(periodId, pEnd);
        bytes32 policy = _policyOf(params);
        bytes32 domain = _domainSeparator();

        uint256 mask = _entriesMask(rec, c.signerCount);
        uint64 deadline = pEnd + c.settlementWindow;
        if (block.timestamp >= deadline) {
            uint64 late = _late[slaId][periodId];
            if (block.timestamp >= late) {
                if (_popcount(mask) >= c.quorum) {
                    revert SettlementWindowClosed(periodId, late == 0 ? deadline : late);
                }
                // stalled: no quorum by the last deadline; this report opens a late window
                late = SafeCast.toUint64(block.timestamp + c.settlementWindow);
                _late[slaId][periodId] = late;
                emit LateWindowOpened(slaId, periodId, late);
            }
        }
        uint256 batch;
        bytes32[] memory batchRoots = new bytes32[](c.signerCount);
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
            if (batch & bit != 0) revert DuplicateSigner(signer);
            if (mask & bit != 0) revert AlreadyReported(signer);
            batch |= bit;
            mask |= bit;
            rec |= (uint256(r.sliPpm) + 1) << (20 * idx);
            batchRoots[idx] = r.evidenceRoot;
            emit ReportAccepted(slaId, periodId, signer, r.sliPpm, r.evidenceRoot);
        }
        rec = (rec & REC_ENTRIES) | (version << REC_VERSION_SHIFT) | (tag << REC_TAG_SHIFT);

        if (_popcount(mask) < c.signerCount) {
            _records[slaId][loc] = rec;
            for (uint256 i = 0; i < c.signerCount; ++i) {
                if (batch & (1 << i) != 0) _roots[slaId][loc][i] = batchRoots[i];
            }
            if (overflowNew) {
                uint256 group = periodId / LANES;
                _summaries[slaId][group] |= LANE_OVERFLOW << ((periodId % LANES) * LANE_BITS);
            }
            return;
        }
        _settle(slaId, periodId, c, params, loc, rec, held ? rec : 0, batch, batchRoots);
    }

    /// @notice Settle a period over all the reports it received, once its report deadline (or
    ///         late deadline) has passed (anyone may call). Needs at least `quorum` reports of
    ///         the current signer set; a period without them stays open for late reports.
    function settle(bytes32 slaId, uint64 periodId) external {
        uint256 version = _state[slaId] & 0xffff;
        uint256 params = _params(slaId, version);
        Core memory c = _coreOf(params);
        if (!c.exists) revert UnknownSLA(slaId);
        uint256 lane = _lane(slaId, periodId);
        if (lane & SETTLED_BIT != 0) revert AlreadySettled(periodId);
        (, uint64 pEnd) = _bounds(slaId, c, periodId);
        uint64 deadline = pEnd + c.settlementWindow;
        uint64 late = _late[slaId][periodId];
        if (late != 0) deadline = late;
        if (block.timestamp < deadline) revert ReportWindowOpen(periodId, deadline);
        (uint256 loc, uint256 rec) = _locate(slaId, periodId, lane);
        if ((rec >> REC_VERSION_SHIFT) & 0xffff != version) rec = 0;
        uint256 count = _popcount(_entriesMask(rec, c.signerCount));
        if (count < c.quorum) revert NoQuorum(periodId, count, c.quorum);
        _settle(slaId, periodId, c, params, loc, rec, rec, 0, new bytes32[](0));
    }

    /// @dev Settle over the reports of `rec`: lower median SLI, breach against the stored
    ///      objective, payout. The median's evidence root is taken from this call's batch
    ///      (`batch` mask, `batchRoots` by signer index) or else from the record's roots.
    ///      `held`: non-zero if storage holds this period's record at `loc` (it is then
    ///      marked settled); zero when the whole period arrived in this call.
    function _settle(
        bytes32 slaId,
        uint64 periodId,
        Core memory c,
        uint256 params,
        uint256 loc,
        uint256 rec,
        uint256 held,
        uint256 batch,
        bytes32[] memory batchRoots
    ) private {
        uint256 n = c.signerCount;
        uint256[] memory all = new uint256[](n);
        uint256 count;
        uint256 mask;
        for (uint256 i = 0; i < n; ++i) {
            uint256 e = (rec >> (20 * i)) & 0xfffff;
            if (e != 0) {
                all[count++] = ((e - 1) << 4) | i;
                mask |= 1 << i;
            }
        }
        assembly ("memory-safe") {
            mstore(all, count)
        }
        _sort(all);
        uint256 med = all[(count - 1) / 2];
        uint32 sli = uint32(med >> 4);
        uint256 medIdx = med & 0xf;
        bytes32 root = batch & (1 << medIdx) != 0 ? batchRoots[medIdx] : _roots[slaId][loc][medIdx];
        _settledRoots[slaId][periodId] = root;
        // the ring slot stays non-zero (reusing it costs a rewrite, not a fresh slot); an
        // overflow slot is cleared. A record never stored needs nothing: a later report finds
        // another period's tag (or none) there and the settled lane.
        if (held != 0) _records[slaId][loc] = loc < 2 ? rec | REC_SETTLED : 0;

        uint256 group = periodId / LANES;
        uint256 shift = (periodId % LANES) * LANE_BITS;
        uint256 word = _summaries[slaId][group];
        bool breached = sli < c.objectivePpm;
        // effects: mark settled first
        uint256 lane = uint256(sli) | (mask << 20) | (medIdx << 36) | SETTLED_BIT | (breached ? BREACHED_BIT : 0);
        _summaries[slaId][group] = (word & ~(LANE_MASK << shift)) | (lane << shift);
        _state[slaId] += 1 << 32;

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
                    l.pool = SafeCast.toUint96(pool - reward);
                    _teamOwed[slaId] += reward;
                    emit TeamRewarded(slaId, periodId, reward);
                }
            }
        }
        emit PeriodSettled(slaId, periodId, sli, breached, compensation, root, count);
    }

    /// @dev Compute the compensation of a breached period, take it from the pool and add it to the
    ///      per-weight accumulator. It is rounded down to whole units per weight, so each
    ///      beneficiary is owed an exact integer and the remainder (< totalWeight wei) stays in
    ///      the pool. No funds move here.
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
        uint256 units = comp / po.totalWeight;
        comp = units * po.totalWeight;
        if (comp != 0) {
            _ledger[slaId] = Ledger({
                pool: SafeCast.toUint96(l.pool - comp),
                accPerWeight: SafeCast.toUint160(l.accPerWeight + units)
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
        b.claimed += SafeCast.toUint192(amount);
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

    /// @notice Whether `signer` (of the current signer set) has a report for the period that
    ///         counts: accepted, and not voided by a rotation.
    function hasReported(bytes32 slaId, uint64 periodId, address signer) public view returns (bool) {
        uint256 version = _state[slaId] & 0xffff;
        uint256 params = _params(slaId, version);
        uint256 slot = _signerSlotOf(params, _coreOf(params).signerCount, signer);
        if (slot == 0) return false;
        return _mask(slaId, periodId, _lane(slaId, periodId), version) & (1 << (slot - 1)) != 0;
    }

    /// @notice Whether sending `signer`'s report now would be useful: the period is finished,
    ///         not settled, the signer (of the current set) has not reported, and it is before
    ///         the (exclusive, possibly late) deadline or the period is stalled without a quorum.
    function needsReport(bytes32 slaId, uint64 periodId, address signer) external view returns (bool) {
        uint256 version = _state[slaId] & 0xffff;
        uint256 params = _params(slaId, version);
        Core memory c = _coreOf(params);
        uint256 slot = _signerSlotOf(params, c.signerCount, signer);
        if (!c.exists || slot == 0 || !_inSchedule(c, periodId)) return false;
        uint256 lane = _lane(slaId, periodId);
        if (lane & SETTLED_BIT != 0) return false;
        uint256 mask = _mask(slaId, periodId, lane, version);
        if (mask & (1 << (slot - 1)) != 0) return false;
        (, uint64 end) = _bounds(slaId, c, periodId);
        if (block.timestamp < end) return false;
        if (block.timestamp < uint256(end) + c.settlementWindow) return true;
        if (block.timestamp < _late[slaId][periodId]) return true;
        return _popcount(mask) < c.quorum;
    }

    /// @notice State of one period. `deadline` is the late deadline once a late window opened;
    ///         `stalled`: past it without a quorum, waiting for reports.
    function getPeriod(bytes32 slaId, uint64 periodId) external view returns (PeriodView memory v) {
        uint256 version = _state[slaId] & 0xffff;
        Core memory c = _coreOf(_params(slaId, version));
        if (!c.exists) revert UnknownSLA(slaId);
        (v.start, v.end) = _bounds(slaId, c, periodId);
        uint64 late = _late[slaId][periodId];
        v.deadline = late != 0 ? late : v.end + c.settlementWindow;
        uint256 lane = _lane(slaId, periodId);
        v.settled = lane & SETTLED_BIT != 0;
        v.breached = lane & BREACHED_BIT != 0;
        v.reportedMask = uint16(_mask(slaId, periodId, lane, version));
        v.reportCount = uint8(_popcount(v.reportedMask));
        if (v.settled) {
            v.sliPpm = uint32(lane & 0xfffff);
            v.evidenceRoot = _settledRoots[slaId][periodId];
        }
        v.stalled = !v.settled && block.timestamp >= v.deadline && v.reportCount < c.quorum;
    }

    /// @notice Parameters and balances of an SLA (signers and quorum of the current set).
    function getSLA(bytes32 slaId) external view returns (SLAView memory v) {
        uint256 version = _state[slaId] & 0xffff;
        uint256 params = _params(slaId, version);
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
        v.singleOracle = c.singleOracle;
        v.signerSetVersion = uint16(version);
        v.firstPeriodId = c.firstPeriodId;
    }

    /// @notice Start and end (exclusive) of a period, as the reports must carry them.
    function periodBounds(bytes32 slaId, uint64 periodId) external view returns (uint64 start, uint64 end) {
        Core memory c = _coreOf(_params(slaId, 0));
        if (!c.exists) revert UnknownSLA(slaId);
        return _bounds(slaId, c, periodId);
    }

    /// @notice The evidence root of `signer`'s report (current signer set) while the period is
    ///         open; once it settled, the settled root for its median signer and zero for the
    ///         others (their roots are in `ReportAccepted`). Zero without such a report.
    function reportRoot(bytes32 slaId, uint64 periodId, address signer) external view returns (bytes32) {
        uint256 version = _state[slaId] & 0xffff;
        uint256 params = _params(slaId, version);
        uint256 slot = _signerSlotOf(params, _coreOf(params).signerCount, signer);
        if (slot == 0) return bytes32(0);
        uint256 idx = slot - 1;
        uint256 lane = _lane(slaId, periodId);
        if (lane & SETTLED_BIT != 0) {
            return (lane >> 36) & 0xf == idx && (lane >> 20) & (1 << idx) != 0
                ? _settledRoots[slaId][periodId]
                : bytes32(0);
        }
        (uint256 loc, uint256 rec) = _locate(slaId, periodId, lane);
        if ((rec >> REC_VERSION_SHIFT) & 0xffff != version || (rec >> (20 * idx)) & 0xfffff == 0) {
            return bytes32(0);
        }
        return _roots[slaId][loc][idx];
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
        uint256 st = _state[slaId];
        uint256 params = _params(slaId, st & 0xffff);
        Core memory c = _coreOf(params);
        if (!c.exists) revert UnknownSLA(slaId);
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
        // a period settles only once finished, so settled <= finished
        uint256 open = finished - uint64(st >> 32);
        if (finished < c.periodCount) ++open;
        uint256 each = _payoutOf(params).maxPayoutPerPeriod;
        uint256 reward = _metRewardOf(params);
        if (reward > each) each = reward;
        uint256 reserve = open * each;
        uint256 pool = _ledger[slaId].pool;
        return pool > reserve ? pool - reserve : 0;
    }

    /// @notice Check one evidence bucket against the settled period's evidence root
    ///         (OpenZeppelin MerkleProof, StandardMerkleTree leaves). The leaf is hashed here from
    ///         its fields, so an internal node cannot pass for a leaf; an empty proof never
    ///         verifies (a one-bucket tree is proven against itself off-chain, not here).
    function verifyEvidence(
        bytes32 slaId,
        uint64 periodId,
        bytes32 targetId,
        uint64 bucketStart,
        uint32 good,
        uint32 valid,
        uint32 noData,
        bytes32[] calldata proof
    ) public view returns (bool) {
        if (proof.length == 0) return false;
        uint256 lane = _lane(slaId, periodId);
        if (lane & SETTLED_BIT == 0) return false;
        bytes32 root = _settledRoots[slaId][periodId];
        return MerkleProof.verifyCalldata(proof, root, evidenceLeaf(targetId, bucketStart, good, valid, noData));
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

    /// @dev The signer-set rules of registration and rotation: 1..10 signers; quorum = 2f + 1
    ///      out of n >= 3f + 1 (any quorum of reports then holds f + 1 honest ones, and the
    ///      median of >= 2f + 1 values with <= f liars lies in the honest range), f >= 1 except on
    ///      the dev chain; or exactly one signer and quorum 1 for an explicit single-oracle SLA.
    function _checkSigners(address[] calldata signers, uint256 q, bool singleOracle) private view {
        uint256 n = signers.length;
        if (n == 0 || n > MAX_SIGNERS) revert InvalidParams("signers");
        if (singleOracle) {
            if (n != 1 || q != 1) revert InvalidParams("singleOracle");
        } else {
            if (q % 2 == 0) revert InvalidParams("quorum");
            uint256 f = (q - 1) / 2;
            if (n < 3 * f + 1) revert InvalidParams("quorum");
            if (f == 0 && block.chainid != DEV_CHAIN_ID) revert InvalidParams("quorum");
        }
    }

    /// @dev Write the signers into the blob (20 bytes each after the header); zero or repeated
    ///      signers are refused.
    function _writeSigners(bytes memory blob, address[] calldata signers) private pure {
        for (uint256 i = 0; i < signers.length; ++i) {
            address s = signers[i];
            if (s == address(0)) revert InvalidParams("signer");
            for (uint256 j = 0; j < i; ++j) {
                if (signers[j] == s) revert InvalidParams("signer");
            }
            uint256 off = BLOB_HEADER + 20 * i;
            assembly ("memory-safe") {
                let ptr := add(add(blob, 32), off)
                mstore(ptr, or(shl(96, s), and(mload(ptr), 0xffffffffffffffffffffffff)))
            }
        }
    }

    /// @dev CREATE3 salt of the parameter blob of signer-set `version` (0: the registration's).
    function _salt(bytes32 slaId, uint256 version) private pure returns (bytes32) {
        return version == 0 ? slaId : keccak256(abi.encode(slaId, version));
    }

    /// @dev Create an SLA's parameter data contract (see "Immutable SLA parameters").
    function _deployParams(bytes32 salt, bytes memory blob) private {
        bytes memory proxyCode = PROXY_INITCODE;
        address proxy;
        assembly ("memory-safe") {
            proxy := create2(0, add(proxyCode, 32), mload(proxyCode), salt)
        }
        if (proxy == address(0)) revert InvalidParams("params");
        // init code: PUSH2 len, DUP1, PUSH1 0x0a, RETURNDATASIZE, CODECOPY, RETURNDATASIZE, RETURN;
        // the runtime code is 0x00 (STOP) ++ blob
        bytes memory initCode =
            abi.encodePacked(hex"61", uint16(blob.length + 1), hex"80600a3d393df300", blob);
        (bool ok,) = proxy.call(initCode);
        if (!ok || _paramsAddress(salt).code.length != blob.length + 1) revert InvalidParams("params");
    }

    /// @dev Address of a parameter data contract (CREATE3: proxy by CREATE2, nonce 1).
    function _paramsAddress(bytes32 salt) private view returns (address a) {
        bytes32 proxyHash = PROXY_INITCODE_HASH;
        assembly ("memory-safe") {
            let m := mload(0x40)
            mstore(0x00, address())
            mstore8(0x0b, 0xff)
            mstore(0x20, salt)
            mstore(0x40, proxyHash)
            mstore(0x14, keccak256(0x0b, 0x55)) // proxy address at [0x20, 0x34)
            mstore(0x40, m)
            mstore(0x00, 0xd694) // RLP list prefix, address prefix
            mstore8(0x34, 0x01) // proxy nonce 1
            a := and(keccak256(0x1e, 0x17), 0xffffffffffffffffffffffffffffffffffffffff)
        }
    }

    /// @dev Copy the parameter blob of the SLA's signer-set `version` to fresh memory (zeros if
    ///      not registered); returns its memory address.
    function _params(bytes32 slaId, uint256 version) private view returns (uint256 ptr) {
        address a = _paramsAddress(_salt(slaId, version));
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
        c.singleOracle = (w >> 249) & 1 != 0;
        c.firstPeriodId = uint64(_word(params, 128));
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

    /// @dev The reported-signer mask of a period; empty while its unsettled reports are of an
    ///      earlier signer set (void since the rotation).
    function _mask(bytes32 slaId, uint64 periodId, uint256 lane, uint256 version) private view returns (uint256) {
        if (lane & SETTLED_BIT != 0) return (lane >> 20) & 0x3ff;
        (, uint256 rec) = _locate(slaId, periodId, lane);
        if ((rec >> REC_VERSION_SHIFT) & 0xffff != version) return 0;
        return _entriesMask(rec, MAX_SIGNERS);
    }

    /// @dev Where the record of an unsettled period is (`loc`) and what it holds: zero if the
    ///      period has none (its ring slot holds another period's).
    function _locate(bytes32 slaId, uint64 periodId, uint256 lane) private view returns (uint256 loc, uint256 rec) {
        if (lane & LANE_OVERFLOW != 0) {
            loc = 2 + periodId;
            return (loc, _records[slaId][loc]);
        }
        loc = periodId & 1;
        rec = _records[slaId][loc];
        if (rec >> REC_TAG_SHIFT != _tag(periodId)) rec = 0;
    }

    /// @dev The ring tag of a period (see `_records`).
    function _tag(uint64 periodId) private pure returns (uint256) {
        return (uint256(periodId) >> 1) & ((1 << 39) - 1);
    }

    /// @dev The signer indexes with a report in `rec`, among the first `n`.
    function _entriesMask(uint256 rec, uint256 n) private pure returns (uint256 mask) {
        for (uint256 i = 0; i < n; ++i) {
            if ((rec >> (20 * i)) & 0xfffff != 0) mask |= 1 << i;
        }
    }

    function _lane(bytes32 slaId, uint64 periodId) private view returns (uint256) {
        return (_summaries[slaId][periodId / LANES] >> ((periodId % LANES) * LANE_BITS)) & LANE_MASK;
    }

    function _bounds(bytes32 slaId, Core memory c, uint64 periodId) private view returns (uint64, uint64) {
        if (!_inSchedule(c, periodId)) revert UnknownPeriod(periodId);
        uint64 i = periodId - c.firstPeriodId;
        if (c.periodLength != 0) {
            uint64 s = c.scheduleStart + i * c.periodLength;
            return (s, s + c.periodLength);
        }
        uint64[] storage b = _boundaries[slaId];
        return (b[i], b[i + 1]);
    }

    function _inSchedule(Core memory c, uint64 periodId) private pure returns (bool) {
        return periodId >= c.firstPeriodId && periodId - c.firstPeriodId < c.periodCount;
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
        return uint256(b.weight) * _ledger[slaId].accPerWeight - b.claimed;
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

    /// @dev Recover the signer of a report.
    function _recover(bytes32 domain, Report calldata r, bytes calldata sig) private pure returns (address) {
        return _recoverDigest(_digest(domain, r), sig);
    }

    /// @dev Recover the signer of an EIP-712 digest; rejects malformed, high-s and zero-address
    ///      signatures.
    function _recoverDigest(bytes32 digest, bytes calldata sig) private pure returns (address) {
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
        address signer = ecrecover(digest, v, rr, ss);
        if (signer == address(0)) revert BadSignature();
        return signer;
    }

    function _gcd(uint256 a, uint256 b) private pure returns (uint256) {
        while (b != 0) {
            (a, b) = (b, a % b);
        }
        return a;
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
            IERC20(asset).safeTransfer(to, amount);
        }
    }
}
