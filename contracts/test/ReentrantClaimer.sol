// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

/// @title ReentrantClaimer (test only)
/// @notice A beneficiary contract that re-enters `claim` when it receives ETH.
contract ReentrantClaimer {
    /// @notice Target SLACompensation contract.
    address public immutable target;
    /// @notice Whether the re-entrant call succeeded (it must not).
    bool public reentryOk;
    /// @notice Whether a re-entry was attempted.
    bool public attempted;
    /// @notice Revert data of the re-entrant call: which guard stopped it.
    bytes public reentryError;
    bytes32 private _slaId;

    /// @param target_ The SLACompensation contract.
    constructor(address target_) {
        target = target_;
    }

    /// @notice Claim as a beneficiary of `slaId`.
    function attack(bytes32 slaId) external {
        _slaId = slaId;
        (bool ok, bytes memory ret) = target.call(abi.encodeWithSignature("claim(bytes32)", slaId));
        if (!ok) {
            assembly {
                revert(add(ret, 32), mload(ret))
            }
        }
    }

    receive() external payable {
        if (!attempted) {
            attempted = true;
            (bool ok, bytes memory ret) = target.call(abi.encodeWithSignature("claim(bytes32)", _slaId));
            reentryOk = ok;
            reentryError = ret;
        }
    }
}
